//! The credentials the operator reaches the members with, as the Secrets show them now: the
//! password every member requires (the user's named Secret or the one the operator generates)
//! and, with `spec.tls`, the TLS client settings ([`super::tls`]).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::tls::{self, Tls};

use crate::controller::build;
use crate::controller::config;
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::labels::Names;
use crate::crd::RedisCluster;
use crate::redis::tls::TlsOptions;

/// Where the password lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
    /// The key of the password in it.
    pub key: String,
}

/// The credentials as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Readable and valid.
    Ready {
        /// Where it lives.
        secret: SecretRef,
        /// The password.
        password: String,
        /// The TLS client settings, when the cluster has `spec.tls`.
        tls: Option<Arc<TlsOptions>>,
    },
    /// The spec names no Secret and the generated one does not exist yet.
    ToGenerate(SecretRef),
    /// What is wrong with the Secret the spec names (missing, no key, a bad password).
    Invalid(String),
    /// What is wrong with `spec.tls`'s Secret (missing, a key missing, PEM that does not
    /// parse). Nothing is created or changed while it is: members cannot be reached or made.
    TlsInvalid(String),
}

impl Auth {
    /// The Secret, when it is known.
    pub fn secret(&self) -> Option<&SecretRef> {
        match self {
            Auth::Ready { secret, .. } | Auth::ToGenerate(secret) => Some(secret),
            Auth::Invalid(_) | Auth::TlsInvalid(_) => None,
        }
    }

    /// The TLS client settings, when the cluster has `spec.tls` and they are usable.
    pub fn tls(&self) -> Option<&Arc<TlsOptions>> {
        match self {
            Auth::Ready { tls, .. } => tls.as_ref(),
            _ => None,
        }
    }

    /// The password observation combined with the TLS one: a bad password Secret is reported
    /// first (as before TLS existed), then a bad TLS Secret, which also keeps the generated
    /// password Secret from being made (nothing is created while the spec cannot be carried out).
    pub fn with_tls(self, tls: Tls) -> Auth {
        match (self, tls) {
            (invalid @ Auth::Invalid(_), _) => invalid,
            (_, Tls::Invalid(message)) => Auth::TlsInvalid(message),
            (
                Auth::Ready {
                    secret, password, ..
                },
                Tls::Ready(options),
            ) => Auth::Ready {
                secret,
                password,
                tls: Some(options),
            },
            (auth, _) => auth,
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

/// Reads the password Secret of `cluster` and, with `spec.tls`, its TLS Secret.
///
/// # Errors
/// Kubernetes API failures.
pub async fn read(cluster: &RedisCluster, ctx: &Context, ns: &str) -> Result<Auth, Error> {
    let password = read_password(cluster, ctx, ns).await?;
    Ok(password.with_tls(tls::read(cluster, ctx, ns).await?))
}

/// Reads the password Secret of `cluster`.
async fn read_password(cluster: &RedisCluster, ctx: &Context, ns: &str) -> Result<Auth, Error> {
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
    // A password that is not UTF-8 is refused, never mangled into one the members run with.
    let value = found
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .map(|b| String::from_utf8(b.0.clone()))
        .transpose();
    let Ok(value) = value else {
        return Ok(Auth::Invalid(format!(
            "auth Secret {name} key {key} is not UTF-8 text"
        )));
    };
    let value = value.or_else(|| {
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
        Ok(()) => Auth::Ready {
            secret,
            password,
            tls: None,
        },
        Err(msg) => Auth::Invalid(msg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Auth {
        Auth::Ready {
            secret: SecretRef::default(),
            password: "pw".into(),
            tls: None,
        }
    }

    #[test]
    fn a_bad_password_secret_comes_first_then_a_bad_tls_secret() {
        let bad_tls = || Tls::Invalid("spec.tls: Secret t not found".into());
        let to_generate = Auth::ToGenerate(SecretRef::default());
        // (password observation, TLS observation, expected)
        let cases = [
            (ready(), Tls::Off, ready()),
            (to_generate.clone(), Tls::Off, to_generate.clone()),
            (
                Auth::Invalid("auth".into()),
                bad_tls(),
                Auth::Invalid("auth".into()),
            ),
            (
                ready(),
                bad_tls(),
                Auth::TlsInvalid("spec.tls: Secret t not found".into()),
            ),
            (
                to_generate,
                bad_tls(),
                Auth::TlsInvalid("spec.tls: Secret t not found".into()),
            ),
        ];
        for (password, tls, expected) in cases {
            let combined = password.clone().with_tls(tls);
            assert_eq!(combined, expected, "{password:?}");
            assert_eq!(combined.tls(), None);
        }
        assert_eq!(Auth::TlsInvalid("x".into()).password(), None);
        assert_eq!(Auth::TlsInvalid("x".into()).secret(), None);
    }
}
