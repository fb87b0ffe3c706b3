//! An S3 destination and its credentials Secret, as a [`Store`].

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::store::{S3Credentials, S3Location, Store, StoreTimeouts};
use crate::crd::backup::S3Destination;

/// The credentials Secret's keys.
pub const ACCESS_KEY_ID: &str = "accessKeyId";
/// The credentials Secret's keys.
pub const SECRET_ACCESS_KEY: &str = "secretAccessKey";
/// The CA Secret's key (as in a `kubernetes.io/tls` Secret or cert-manager's).
pub const CA_KEY: &str = "ca.crt";

/// Why a destination cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The Secret is missing or lacks a key: the user's to fix.
    #[error("{0}")]
    Credentials(String),
    /// The store refused the settings.
    #[error("{0}")]
    Store(String),
    /// Kubernetes API failure.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// The store of `dest` at its prefix, with the credentials from its Secret in `ns`.
///
/// # Errors
/// A missing Secret or key, an unusable endpoint, Kubernetes API failures.
pub async fn open(
    client: &kube::Client,
    ns: &str,
    dest: &S3Destination,
) -> Result<Store, DestinationError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = &dest.credentials_secret;
    let secret = api.get_opt(name).await?.ok_or_else(|| {
        DestinationError::Credentials(format!(
            "the credentials Secret {name} does not exist (keys {ACCESS_KEY_ID}, {SECRET_ACCESS_KEY})"
        ))
    })?;
    let key = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                DestinationError::Credentials(format!(
                    "the credentials Secret {name} has no key {k}"
                ))
            })
    };
    let credentials = S3Credentials {
        access_key_id: key(ACCESS_KEY_ID)?,
        secret_access_key: key(SECRET_ACCESS_KEY)?,
    };
    let ca_pem = match &dest.ca_secret {
        Some(ca) => Some(ca_of(&api, ca).await?),
        None => None,
    };
    let location = S3Location {
        endpoint: dest.endpoint.clone(),
        bucket: dest.bucket.clone(),
        prefix: dest.prefix.clone(),
        region: dest.region.clone(),
        ca_pem,
    };
    Store::s3(&location, &credentials, StoreTimeouts::default())
        .map_err(|e| DestinationError::Store(e.to_string()))
}

/// The PEM in the CA Secret `name`.
async fn ca_of(api: &Api<Secret>, name: &str) -> Result<Vec<u8>, DestinationError> {
    let secret = api.get_opt(name).await?.ok_or_else(|| {
        DestinationError::Credentials(format!(
            "the CA Secret {name} does not exist (key {CA_KEY})"
        ))
    })?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(CA_KEY))
        .map(|v| v.0.clone())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            DestinationError::Credentials(format!("the CA Secret {name} has no key {CA_KEY}"))
        })
}
