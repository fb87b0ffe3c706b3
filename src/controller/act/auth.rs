//! The generated password Secret, created when the spec names none.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::events::EventType;

use super::events::publish;
use super::executed::Executed;
use crate::controller::build;
use crate::controller::context::Context;
use crate::controller::labels::{MANAGER, Names};
use crate::crd::RedisCluster;

/// Creates the generated password Secret (already there is fine), with an Event.
///
/// # Errors
/// Kubernetes API failures.
pub async fn create(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
) -> Result<Executed, kube::Error> {
    let name = Names::generated_auth_secret(cluster);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&pp, &build::secret::build(cluster)).await {
        Ok(_) => {
            let note = format!("generated password Secret {name}");
            publish(ctx, cluster, EventType::Normal, "AuthSecretCreated", &note).await;
            Ok(Executed::Applied(note))
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Executed::Nothing),
        Err(e) => Err(e),
    }
}
