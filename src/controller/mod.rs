//! The RedisCluster controller: observe → plan → one safe step → status.
//!
//! Each reconcile starts from scratch: Kubernetes objects come from reflector caches, the Redis
//! view from the members themselves. The planner is pure and decides the next safe step; only
//! [`reconcile`] performs I/O. Nothing is remembered between reconciles, so an operator restart
//! at any instant resumes from what the cluster shows.

pub mod act;
pub mod build;
pub mod config;
pub mod context;
pub mod error;
pub mod labels;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};

use crate::crd::RedisCluster;
pub use context::Context;
pub use error::Error;

/// How `redis-operator run` wires the controller to leader election and the probe endpoint.
pub struct RunOptions {
    /// Only this namespace (None: all).
    pub namespace: Option<String>,
    /// Whether this replica may act; also names it in Events and logs.
    pub leadership: crate::leader::Leadership,
    /// Yields whenever this replica becomes the leader: every RedisCluster is reconciled then
    /// (a standby's reconciles did nothing, and its caches are warm).
    pub acquisitions: futures::stream::BoxStream<'static, ()>,
    /// Set once every reflector cache has synced (`/readyz`).
    pub readiness: crate::http::Readiness,
    /// What each pass records (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The namespace the operator's Pod runs in (POD_NAMESPACE), if it runs in one.
    pub operator_namespace: Option<String>,
    /// Loops started beside the controller on the same context (the backup and restore
    /// loops): the caller wires them, so this module imports none of them.
    pub companions: Vec<Companion>,
}

/// A loop started with the controller's context.
pub type Companion =
    Box<dyn FnOnce(Arc<Context>) -> futures::future::BoxFuture<'static, ()> + Send>;

/// Runs the controller until SIGTERM/Ctrl-C.
///
/// # Errors
/// When the RedisCluster CRD is not installed.
pub async fn run(client: Client, options: RunOptions) -> Result<(), Error> {
    let RunOptions {
        namespace,
        leadership,
        acquisitions,
        readiness,
        metrics,
        operator_namespace,
        companions,
    } = options;
    let clusters: Api<RedisCluster> = scoped(&client, namespace.as_deref());
    // Fail fast with a clear message instead of a watch error loop when the CRD is missing.
    clusters
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(Error::CrdMissing)?;

    let member_cfg = watcher::Config::default().labels(labels::MANAGED_BY_SELECTOR);
    let (pods, pod_stream) = member_watch::<Pod>(&client, namespace.as_deref());
    let (pvcs, pvc_stream) = member_watch::<PersistentVolumeClaim>(&client, namespace.as_deref());
    let nodes = node_cache(&client);
    let (caches_tx, caches) = tokio::sync::watch::channel(false);

    let ctx = Arc::new(Context {
        client: client.clone(),
        // Events name the replica that acted (reportingInstance).
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: labels::MANAGER.into(),
                instance: Some(leadership.identity().into()),
            },
        ),
        pods: pods.clone(),
        pvcs: pvcs.clone(),
        nodes: nodes.clone(),
        leadership: leadership.clone(),
        metrics: metrics.clone(),
        operator_namespace,
        connects: Default::default(),
        applied: Default::default(),
        caches,
    });
    nodes
        .wait_until_ready()
        .await
        .map_err(|_| Error::CacheNotReady)?;
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("*"),
        "redis-operator started"
    );
    for companion in companions {
        tokio::spawn(companion(ctx.clone()));
    }

    // The RedisCluster reflector as Controller::new builds it, plus a signal once its first list
    // is in (/readyz). Not Store::wait_until_ready on the controller's store: the controller's
    // runner already waits on it, and kube-runtime's DelayedInit wakes only the last of two
    // concurrent waiters (seen: /readyz never turning ready on the replica that reconciled).
    let (clusters_cache, clusters_writer) = reflector::store();
    let (clusters_synced, clusters_synced_rx) = tokio::sync::watch::channel(false);
    let cluster_stream = reflector(
        clusters_writer,
        watcher(clusters, watcher::Config::default().any_semantic()),
    )
    .inspect(move |event| {
        // A deleted cluster's series go with it (the reconciler never sees the deletion).
        if let Ok(e) = event {
            metrics.cluster_event(e);
        }
        if matches!(event, Ok(watcher::Event::InitDone)) {
            clusters_synced.send_replace(true);
        }
    })
    .applied_objects();
    tokio::spawn(signal_ready(
        pods,
        pvcs,
        nodes,
        clusters_synced_rx,
        (caches_tx, readiness),
    ));
    Controller::for_stream(cluster_stream, clusters_cache)
        .owns_stream(pod_stream)
        .owns_stream(pvc_stream)
        .owns(
            scoped::<ConfigMap>(&client, namespace.as_deref()),
            member_cfg.clone(),
        )
        .owns(
            scoped::<Service>(&client, namespace.as_deref()),
            member_cfg.clone(),
        )
        .owns(
            scoped::<PodDisruptionBudget>(&client, namespace.as_deref()),
            member_cfg,
        )
        .with_config(
            controller::Config::default()
                .concurrency(8)
                .debounce(Duration::from_millis(200)),
        )
        .reconcile_all_on(acquisitions)
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, obj)) => {
                    tracing::warn!(cluster = %obj, error = %e, "reconcile failed")
                }
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
    tracing::info!("redis-operator stopped");
    Ok(())
}

/// A reflector cache of the operator's member objects of kind `K` (label-selected), and the
/// stream of their changes that triggers the owners' reconciles.
fn member_watch<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    reflector::Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(
            scoped::<K>(client, namespace),
            watcher::Config::default().labels(labels::MANAGED_BY_SELECTOR),
        ),
    )
    .default_backoff()
    .touched_objects();
    (store, stream)
}

/// Every Node, cached. Nodes do not trigger reconciles: their heartbeats would wake every
/// cluster every few seconds. Clusters waiting on nodes requeue on a timer instead.
fn node_cache(client: &Client) -> reflector::Store<Node> {
    let (nodes, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    tokio::spawn(stream);
    nodes
}

/// Reconciles may plan ([`Context::caches_synced`]) and `/readyz` turns ready once every cache
/// has its first list. Each of these stores has no other waiter (see the RedisCluster
/// reflector in [`run`]): the reconcilers read the flag instead of waiting on the stores.
async fn signal_ready(
    pods: reflector::Store<Pod>,
    pvcs: reflector::Store<PersistentVolumeClaim>,
    nodes: reflector::Store<Node>,
    mut clusters_synced: tokio::sync::watch::Receiver<bool>,
    (caches, readiness): (tokio::sync::watch::Sender<bool>, crate::http::Readiness),
) {
    let stores = futures::future::try_join3(
        pods.wait_until_ready(),
        pvcs.wait_until_ready(),
        nodes.wait_until_ready(),
    )
    .await;
    let clusters = clusters_synced.wait_for(|synced| *synced).await;
    if stores.is_ok() && clusters.is_ok() {
        tracing::info!("caches synced: ready");
        caches.send_replace(true);
        readiness.set_ready();
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
