//! The generated auth Secret (only when `spec.auth.secretName` is not set), and the operator's
//! auth state Secret: the password members run with.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::meta;
use crate::controller::labels::Names;
use crate::crd::RedisCluster;

/// Key of the password in the generated Secret, and of the active one in the state Secret.
pub const PASSWORD_KEY: &str = "password";
/// Key of the previous password in the state Secret, during a rotation's grace period.
pub const PREVIOUS_KEY: &str = "previous";

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

/// The auth state Secret, first made with the password members accept now. Rotations patch it
/// (`act::passwords`); the cluster owns it, so it goes with the cluster.
pub fn state(cluster: &RedisCluster, password: &str) -> Secret {
    Secret {
        metadata: meta(cluster, Names::auth_state_secret(cluster)),
        string_data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_string(),
            password.to_string(),
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
