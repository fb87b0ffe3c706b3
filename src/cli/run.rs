//! `redis-operator run`: the controller process.
//!
//! Wires four things together: the Kubernetes client, leader election (optional), the HTTP
//! endpoint for probes, and the controller. Every replica runs the controller with warm caches;
//! only the Lease holder acts (see [`crate::leader`]). A replica that loses the Lease exits
//! non-zero so that the kubelet restarts it as a clean standby.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::leader::{Elector, Leadership, Timing};

/// Arguments of `redis-operator run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Only manage RedisClusters in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Run as one of several replicas: only the holder of a coordination.k8s.io Lease acts.
    /// Off by default (a single process, as on a developer machine or in the e2e suite).
    #[arg(long, env = "LEADER_ELECTION", num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the Lease (default: POD_NAMESPACE from the downward API, else --namespace,
    /// else the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, env = "LEADER_ELECTION_ID", default_value = "redis-operator")]
    pub leader_election_id: String,
    /// A standby takes the Lease over once its record has not changed for this long.
    #[arg(
        long,
        env = "LEASE_DURATION_SECONDS",
        value_name = "SECONDS",
        default_value_t = 15
    )]
    pub lease_duration_seconds: u32,
    /// The leader stops acting this long after the start of its last successful renewal
    /// (must be below the lease duration).
    #[arg(
        long,
        env = "RENEW_DEADLINE_SECONDS",
        value_name = "SECONDS",
        default_value_t = 10.0
    )]
    pub renew_deadline_seconds: f64,
    /// Pause between attempts to acquire or renew the Lease.
    #[arg(
        long,
        env = "RETRY_PERIOD_SECONDS",
        value_name = "SECONDS",
        default_value_t = 2.0
    )]
    pub retry_period_seconds: f64,
    /// This process's name in the Lease, in Events (reportingInstance) and logs (default:
    /// POD_NAME from the downward API with a random suffix, unique per process; else
    /// hostname-pid).
    #[arg(long)]
    pub identity: Option<String>,
    /// Address of the HTTP endpoint: /healthz, /readyz (and /metrics). "off" disables it.
    #[arg(long, env = "HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: String,
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
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

fn timing(args: &RunArgs) -> Result<Timing, String> {
    let secs = |name: &str, v: f64| {
        Duration::try_from_secs_f64(v).map_err(|e| format!("--{name} {v}: {e}"))
    };
    let timing = Timing {
        lease_duration: Duration::from_secs(u64::from(args.lease_duration_seconds)),
        renew_deadline: secs("renew-deadline-seconds", args.renew_deadline_seconds)?,
        retry_period: secs("retry-period-seconds", args.retry_period_seconds)?,
    };
    timing.validate()?;
    Ok(timing)
}

async fn run(args: RunArgs) -> Result<(), String> {
    let timing = timing(&args)?;
    let http_address: Option<SocketAddr> = match args.http_address.as_str() {
        "off" | "" => None,
        a => Some(
            a.parse()
                .map_err(|e| format!("--http-address {a:?}: {e}"))?,
        ),
    };
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot build the Kubernetes client: {e}"))?;
    let identity = args
        .identity
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(crate::leader::default_identity);
    let stop = CancellationToken::new();

    let (elector, leadership, acquisitions) = if args.leader_election {
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let (elector, leadership) = Elector::new(
            client.clone(),
            &namespace,
            &args.leader_election_id,
            &identity,
            timing,
        );
        let acquisitions = elector.acquisitions().boxed();
        (Some(elector), leadership, acquisitions)
    } else {
        (
            None,
            Leadership::always(identity.clone()),
            futures::stream::pending().boxed(),
        )
    };

    let readiness = crate::http::Readiness::default();
    let metrics = crate::metrics::Metrics::new();
    if let Some(addr) = http_address {
        match crate::http::bind(addr).await {
            Ok(listener) => {
                tracing::info!(%addr, "http: serving /healthz, /readyz and /metrics");
                tokio::spawn(crate::http::serve(
                    listener,
                    crate::http::State {
                        readiness: readiness.clone(),
                        leadership: leadership.clone(),
                        metrics: metrics.clone(),
                    },
                    stop.clone(),
                ));
            }
            // Not fatal: in a Pod the kubelet's probes then fail and restart it, which says
            // exactly what is wrong; on a host running several operators (the e2e suite runs
            // one per namespace) only the first gets the port.
            Err(e) => tracing::error!(%addr, error = %e, "http: cannot bind; no probes"),
        }
    }

    let span = tracing::info_span!("operator", replica = %identity);
    let controller = crate::controller::run(
        client,
        crate::controller::RunOptions {
            namespace: args.namespace.clone(),
            leadership,
            acquisitions,
            readiness,
            metrics,
            // POD_NAMESPACE only (not --namespace): set when the operator runs in a Pod.
            operator_namespace: std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty()),
            companions: companions(args.namespace.clone()),
        },
    )
    .instrument(span.clone());

    let Some(elector) = elector else {
        let result = controller.await.map_err(|e| e.to_string());
        stop.cancel();
        return result;
    };
    let mut election = tokio::spawn(elector.run(stop.clone()).instrument(span));
    tokio::select! {
        result = controller => {
            // SIGTERM: the controller finished its running reconciles; release the Lease so a
            // standby takes over at its next retry instead of after a lease duration.
            stop.cancel();
            if let Ok(Err(lost)) = (&mut election).await {
                tracing::warn!(error = %lost, "lease lost while stopping");
            }
            result.map_err(|e| e.to_string())
        }
        lost = &mut election => {
            // may_act() is already false: nothing acts any more. Exit so that the kubelet
            // restarts a clean standby; no reconcile of the lost term survives.
            stop.cancel();
            match lost {
                Ok(Err(lost)) => Err(lost.to_string()),
                Ok(Ok(())) => Err("leader election stopped".into()),
                Err(e) => Err(format!("leader election task failed: {e}")),
            }
        }
    }
}

/// The backup and schedule controllers and the restore loop, on the controller's context.
fn companions(namespace: Option<String>) -> Vec<crate::controller::Companion> {
    let backups = namespace.clone();
    let schedules = namespace.clone();
    vec![
        Box::new(move |ctx| Box::pin(crate::backup::controller::run(ctx, backups))),
        Box::new(move |ctx| Box::pin(crate::backup::schedule::run(ctx, schedules))),
        Box::new(move |ctx| Box::pin(crate::backup::restore::run(ctx, namespace))),
    ]
}
