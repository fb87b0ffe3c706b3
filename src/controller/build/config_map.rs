//! The ConfigMap holding redis.conf.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::meta;
use crate::controller::labels::Names;
use crate::crd::RedisCluster;

/// ConfigMap with the rendered redis.conf under key `redis.conf`.
pub fn build(cluster: &RedisCluster, rendered: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(cluster, Names::config_map(cluster)),
        data: Some(BTreeMap::from([(
            "redis.conf".to_string(),
            rendered.to_string(),
        )])),
        ..ConfigMap::default()
    }
}
