//! Prints the RedisCluster CustomResourceDefinition as YAML; `make crds` writes it to `crds/`.

use kube::CustomResourceExt;
use redis_operator::crd::RedisCluster;

fn main() -> std::process::ExitCode {
    match serde_yaml::to_string(&RedisCluster::crd()) {
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
