//! `redis-operator run`: the controller process.

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Arguments of `redis-operator run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Only manage RedisClusters in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// How logs are printed.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Entry point of `redis-operator run`.
pub fn main(args: RunArgs) -> ExitCode {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::controller::run(args.namespace)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}
