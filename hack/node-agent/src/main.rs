//! node-agent: a test-only kubelet stand-in that serves several simulated nodes from one
//! process and runs their redis Pods as real processes in per-pod network and mount
//! namespaces. See README.md.

mod agent;
mod cli;
mod control;
mod ids;
mod linkem;
mod loopvol;
mod netns;
mod node;
mod pod;
mod provisioner;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ctl(c) => match control::client(&c.state_dir, &c.action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("node-agent ctl: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::EnterRootfs(a) => pod::enter::enter(&a),
        Command::Cleanup(c) => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("node-agent cleanup: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (killed, sandboxes) = rt.block_on(agent::cleanup_leftovers(&c.state_dir));
            // After the processes: a volume a pod still used could only be detached lazily.
            let unmounted = rt.block_on(loopvol::unmount_all(&c.state_dir));
            println!(
                "killed {killed} processes, removed {sandboxes} sandboxes, unmounted {unmounted} volumes"
            );
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("node-agent: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(agent::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
