//! What a step did ([`Executed`], with its typed error [`ActError`]) and what every step may
//! need ([`Scope`]): shared by the step modules of `act`.

use std::sync::Arc;
use std::time::Duration;

use crate::controller::context::Context;
use crate::crd::RedisCluster;
use crate::redis::ops::{ClusterAdmin, OpError};

/// Why a step failed, typed by where it failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActError {
    /// A Redis operation refused or failed.
    #[error("{0}")]
    Redis(Arc<OpError>),
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(Arc<kube::Error>),
}

/// What the step did.
#[derive(Debug, Clone)]
pub enum Executed {
    /// Nothing was sent.
    Nothing,
    /// Commands were sent and verified.
    Applied(String),
    /// A batch of slots moved (scaling).
    Resharded {
        /// What was done, for logs.
        message: String,
        /// Slots moved.
        slots: usize,
        /// Keys moved with them.
        keys: u64,
    },
    /// The step (or part of it) failed; `transient` when retrying soon is the right reaction.
    Failed {
        /// CamelCase reason for the condition and the Warning Event.
        reason: &'static str,
        /// What failed, for humans.
        message: String,
        /// Retry soon (a member restarting, gossip not settled) or back off.
        transient: bool,
        /// At least how long to wait before the same step may be tried again.
        retry_after: Duration,
        /// The error, when one was raised (a precondition the plan's data no longer meets
        /// has none).
        error: Option<ActError>,
    },
}

pub fn failed(reason: &'static str, message: String, e: OpError) -> Executed {
    Executed::Failed {
        reason,
        message,
        transient: e.is_transient(),
        retry_after: Duration::ZERO,
        error: Some(ActError::Redis(Arc::new(e))),
    }
}

/// A Kubernetes API failure of a step, as a failed step: retried soon when the API server is
/// busy or unavailable, backed off when it refused the request (the message says why).
pub fn kube_failed(reason: &'static str, what: &str, e: kube::Error) -> Executed {
    let transient = match &e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429 || s.code == 409,
        _ => true,
    };
    // The API server's own sentence ("... is invalid: spec.tolerations[0].key: ..."), not the
    // whole Status dump: it lands in a condition and an Event.
    let detail = match &e {
        kube::Error::Api(s) if !s.message.is_empty() => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    };
    Executed::Failed {
        reason,
        message: format!("{what}: {detail}"),
        transient,
        retry_after: Duration::ZERO,
        error: Some(ActError::Kube(Arc::new(e))),
    }
}

/// Everything a step may need besides the plan.
pub struct Scope<'a> {
    /// The cluster.
    pub cluster: &'a RedisCluster,
    /// Shared context.
    pub ctx: &'a Context,
    /// Namespace.
    pub ns: &'a str,
    /// Cluster name.
    pub name: &'a str,
    /// Admin over every member with an address.
    pub admin: &'a ClusterAdmin,
    /// Member build inputs.
    pub inputs: MemberInputs<'a>,
}

/// What every member Pod is built with, besides its own identity.
pub struct MemberInputs<'a> {
    /// Secret holding the password.
    pub secret_name: &'a str,
    /// Key of the password in it.
    pub secret_key: &'a str,
    /// The revision members are built from.
    pub revision: &'a str,
    /// The runtime config a new member starts with (annotation value).
    pub live_config: &'a str,
}
