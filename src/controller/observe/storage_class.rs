//! Whether the StorageClass the spec names exists. A claim of a class that does not exist stays
//! Pending for ever, and its member with it: the spec is refused instead, before anything is
//! created.

use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;

use crate::controller::context::Context;
use crate::crd::RedisCluster;

/// The StorageClass `spec.storage.storageClassName` names, when it does not exist. `None` when
/// it exists, when the spec names none, or when it cannot be read (an install without the
/// right to read StorageClasses does not refuse what it cannot check).
pub async fn missing(cluster: &RedisCluster, ctx: &Context) -> Option<String> {
    // An empty name asks for no class (a pre-provisioned volume): nothing to look up.
    let name = cluster
        .spec
        .storage
        .as_ref()?
        .storage_class_name
        .as_ref()
        .filter(|n| !n.is_empty())?;
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    match api.get_opt(name).await {
        Ok(None) => Some(name.clone()),
        Ok(Some(_)) => None,
        Err(e) => {
            tracing::debug!(storage_class = %name, error = %e, "cannot read the StorageClass");
            None
        }
    }
}
