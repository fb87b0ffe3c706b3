//! Prints a CustomResourceDefinition as YAML; `make crds` writes them to `crds/`.
//!
//! `crdgen` (or `crdgen redisclusters`) prints the RedisCluster CRD; `crdgen
//! redisclusterbackups` the RedisClusterBackup CRD, `crdgen redisclusterbackupschedules` the
//! RedisClusterBackupSchedule CRD.

use kube::CustomResourceExt;
use redis_operator::crd::{RedisCluster, RedisClusterBackup, RedisClusterBackupSchedule};

fn main() -> std::process::ExitCode {
    let which = std::env::args().nth(1).unwrap_or_default();
    let crd = match which.as_str() {
        "" | "redisclusters" => RedisCluster::crd(),
        "redisclusterbackups" => RedisClusterBackup::crd(),
        "redisclusterbackupschedules" => RedisClusterBackupSchedule::crd(),
        other => {
            eprintln!(
                "crdgen: unknown kind {other:?} (redisclusters, redisclusterbackups, redisclusterbackupschedules)"
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    match serde_yaml::to_string(&crd) {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot serialize the CRD: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
