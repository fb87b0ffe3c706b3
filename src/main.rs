//! The `redis-operator` binary: a thin command-line shell over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use redis_operator::cli;

#[derive(Parser)]
#[command(
    name = "redis-operator",
    version,
    about = "Zone-aware Redis Cluster operator for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster in the current kubeconfig (or in-cluster config).
    Run(cli::run::RunArgs),
    /// What-if placement: print where every shard member would run on a given set of nodes.
    Plan(cli::plan::PlanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cli::run::main(args),
        Command::Plan(args) => cli::plan::main(args),
    }
}
