//! The generated auth Secret (only when `spec.auth.secretName` is not set).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::meta;
use crate::controller::labels::Names;
use crate::crd::RedisCluster;

/// Key of the password in the generated Secret.
pub const PASSWORD_KEY: &str = "password";

/// A Secret with a fresh random password. Created once and never overwritten: rotating the
/// password under running members would lock the operator and the replicas out.
pub fn build(cluster: &RedisCluster) -> Secret {
    Secret {
        metadata: meta(cluster, Names::generated_auth_secret(cluster)),
        string_data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_string(),
            random_password(),
        )])),
        type_: Some("Opaque".to_string()),
        ..Secret::default()
    }
}

fn random_password() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}
