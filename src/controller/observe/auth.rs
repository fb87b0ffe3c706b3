//! The password every member requires, as the Secret shows it now: the user's named Secret or
//! the one the operator generates.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::controller::build;
use crate::controller::config;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::labels::Names;
use crate::crd::RedisCluster;

/// Where the password lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// The key of the password in it.
    pub key: String,
}

/// The password as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Readable and valid.
    Ready {
        /// Where it lives.
        secret: SecretRef,
        /// The password.
        password: String,
    },
    /// The spec names no Secret and the generated one does not exist yet.
    ToGenerate(SecretRef),
    /// What is wrong with the Secret the spec names (missing, no key, a bad password).
    Invalid(String),
}

impl Auth {
    /// The Secret, when it is known.
    pub fn secret(&self) -> Option<&SecretRef> {
        match self {
            Auth::Ready { secret, .. } | Auth::ToGenerate(secret) => Some(secret),
            Auth::Invalid(_) => None,
        }
    }

    /// The password, when it is usable.
    pub fn password(&self) -> Option<&str> {
        match self {
            Auth::Ready { password, .. } => Some(password),
            _ => None,
        }
    }
}

/// Reads the password Secret of `cluster`.
///
/// # Errors
/// Kubernetes API failures.
pub async fn read(cluster: &RedisCluster, ctx: &Context, ns: &str) -> Result<Auth, Error> {
    let auth = cluster.spec.auth.clone().unwrap_or_default();
    let key = auth
        .secret_key
        .unwrap_or_else(|| build::secret::PASSWORD_KEY.to_string());
    let generated = auth.secret_name.is_none();
    let name = auth
        .secret_name
        .unwrap_or_else(|| Names::generated_auth_secret(cluster));
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = SecretRef {
        name: name.clone(),
        key: key.clone(),
    };
    let Some(found) = api.get_opt(&name).await? else {
        return Ok(if generated {
            Auth::ToGenerate(secret)
        } else {
            Auth::Invalid(format!("auth Secret {name} not found"))
        });
    };
    let value = found
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            found
                .string_data
                .as_ref()
                .and_then(|d| d.get(&key))
                .cloned()
        });
    let Some(password) = value else {
        return Ok(Auth::Invalid(format!(
            "auth Secret {name} has no key {key}"
        )));
    };
    Ok(match config::validate_password(&password) {
        Ok(()) => Auth::Ready { secret, password },
        Err(msg) => Auth::Invalid(msg),
    })
}
