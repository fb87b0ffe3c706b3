//! Errors of the controller.

/// A reconcile or start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// The CRD is not installed or not readable with our RBAC.
    #[error(
        "cannot list RedisClusters (is the CRD in crds/ applied, and the RBAC in manifests/?): {0}"
    )]
    CrdMissing(#[source] kube::Error),
    /// A reflector cache never became ready.
    #[error("the node cache did not become ready")]
    CacheNotReady,
    /// The namespace is being deleted: nothing can be created in it any more.
    #[error("the namespace is being deleted")]
    NamespaceTerminating,
    /// The object lacks a name or namespace (never true for objects from the API server).
    #[error("object without name or namespace")]
    MissingMetadata,
}

impl Error {
    /// The namespace is being deleted: creating anything in it is refused, and the cluster is
    /// about to go with it, so there is nothing to retry.
    pub fn is_namespace_terminating(&self) -> bool {
        match self {
            Error::NamespaceTerminating => true,
            Error::Kube(kube::Error::Api(status)) => {
                status.code == 403
                    && status.details.as_ref().is_some_and(|d| {
                        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                    })
            }
            _ => false,
        }
    }

    /// Short label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeError",
            Error::CrdMissing(_) => "CrdMissing",
            Error::CacheNotReady => "CacheNotReady",
            Error::NamespaceTerminating => "NamespaceTerminating",
            Error::MissingMetadata => "MissingMetadata",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}
