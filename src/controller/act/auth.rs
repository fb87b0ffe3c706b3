//! The password every member requires: a user-named Secret, or one the operator generates.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::events::EventType;

use crate::controller::act::events::publish;
use crate::controller::build;
use crate::controller::config;
use crate::controller::labels::{MANAGER, Names};
use crate::controller::{Context, Error};
use crate::crd::RedisCluster;

pub async fn ensure_auth_secret(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
) -> Result<Result<(String, String), String>, Error> {
    let auth = cluster.spec.auth.clone().unwrap_or_default();
    let key = auth
        .secret_key
        .unwrap_or_else(|| build::secret::PASSWORD_KEY.to_string());
    if let Some(name) = auth.secret_name {
        return Ok(Ok((name, key)));
    }
    let name = Names::generated_auth_secret(cluster);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if api.get_opt(&name).await?.is_none() {
        match api
            .create(
                &PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..PostParams::default()
                },
                &build::secret::build(cluster),
            )
            .await
        {
            Ok(_) => {
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "AuthSecretCreated",
                    &format!("generated password Secret {name}"),
                )
                .await
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ok((name, key)))
}
pub async fn read_password(
    ctx: &Context,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Result<String, String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(Err(format!("auth Secret {name} not found")));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        });
    let Some(password) = value else {
        return Ok(Err(format!("auth Secret {name} has no key {key}")));
    };
    Ok(config::validate_password(&password).map(|()| password))
}
