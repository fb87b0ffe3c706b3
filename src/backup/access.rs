//! How the backup and restore loops reach a RedisCluster's members: the same credentials the
//! cluster's own reconcile uses (the password on the operator's record, TLS from its Secret),
//! and the cluster as every answering member reports it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::controller::context::Context;
use crate::controller::observe::{auth, passwords, pods, redis as member_redis};
use crate::crd::RedisCluster;
use crate::redis::client::AdminOptions;
use crate::redis::model::{self, ClusterView};

/// One look at a cluster's members.
pub struct Access {
    /// Credentials and timeouts for admin connections.
    pub options: AdminOptions,
    /// Live member Pods by Redis address.
    pub pods: BTreeMap<SocketAddr, String>,
    /// The cluster as every answering member reports it.
    pub view: ClusterView,
}

impl Access {
    /// The Pod at `addr`, or the address when no live Pod has it.
    pub fn pod_at(&self, addr: SocketAddr) -> String {
        self.pods
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    /// Every member address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.pods.keys().copied().collect()
    }
}

/// Why the members could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The password or TLS Secret is missing or unusable.
    #[error("{0}")]
    Credentials(String),
    /// Kubernetes API failure.
    #[error("kubernetes: {0}")]
    Kube(String),
}

/// Reads the credentials and observes every live member of `cluster`.
///
/// # Errors
/// Missing credentials, Kubernetes API failures.
pub async fn observe(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
) -> Result<Access, AccessError> {
    let found = auth::read(cluster, ctx, ns)
        .await
        .map_err(|e| AccessError::Kube(e.to_string()))?;
    let state = passwords::read_state(cluster, ctx, ns)
        .await
        .map_err(|e| AccessError::Kube(e.to_string()))?;
    let credentials = passwords::Credentials {
        wanted: found.password().map(passwords::Password::new),
        state,
        grace: passwords::grace(cluster),
        members: BTreeMap::new(),
    };
    let found = credentials.connect_with(found);
    if found.password().is_none() {
        return Err(AccessError::Credentials(format!(
            "the password of RedisCluster {} is not readable yet",
            cluster.metadata.name.as_deref().unwrap_or_default()
        )));
    }
    let mut options = member_redis::admin_options(&found);
    // Longer than a reconcile's: a backup or restore is not a pass that must stay short, and a
    // member busy loading or forking should not fail it.
    options.timeouts.connect = Duration::from_secs(3);
    options.timeouts.command = Duration::from_secs(30);
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let members = pods::members(&ctx.pods.state(), ns, name);
    let pods: BTreeMap<SocketAddr, String> = members
        .iter()
        .filter(|m| !m.finished() && !m.terminating())
        .filter_map(|m| Some((member_redis::addr_of(m)?, m.name().to_string())))
        .collect();
    let addrs: Vec<SocketAddr> = pods.keys().copied().collect();
    let view = model::observe(&addrs, &options).await;
    Ok(Access {
        options,
        pods,
        view,
    })
}
