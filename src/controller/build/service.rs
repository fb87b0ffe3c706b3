//! The client Service and the headless Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{meta, tls};
use crate::controller::config::{BUS_PORT, REDIS_PORT};
use crate::controller::labels::{self, Names};
use crate::crd::RedisCluster;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// ClusterIP Service for cluster-aware clients to bootstrap from (any ready member).
pub fn client(cluster: &RedisCluster) -> Service {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    Service {
        metadata: meta(cluster, Names::client_service(cluster)),
        spec: Some(ServiceSpec {
            selector: Some(labels::selector_labels(&name)),
            ports: Some(client_ports(cluster)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The client port, and the plaintext port when TLS is on and one is asked for.
fn client_ports(cluster: &RedisCluster) -> Vec<ServicePort> {
    let mut ports = vec![port("redis", REDIS_PORT)];
    if tls::of(cluster).is_some_and(|t| t.plaintext_port) {
        ports.push(port("redis-plain", tls::PLAINTEXT_PORT));
    }
    ports
}

/// Headless Service listing every member, ready or not (members must find each other before
/// they are ready).
pub fn headless(cluster: &RedisCluster) -> Service {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    Service {
        metadata: meta(cluster, Names::headless_service(cluster)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector_labels(&name)),
            ports: Some(vec![
                port("redis", REDIS_PORT),
                port("cluster-bus", BUS_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
