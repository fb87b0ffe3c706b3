//! What the kubelet tells containers about the cluster: the `kubernetes` Service environment
//! (in-cluster clients read KUBERNETES_SERVICE_HOST/PORT) and, for dnsPolicy ClusterFirst, a
//! resolv.conf pointing at the cluster DNS Service.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{Api, Client};
use tracing::warn;

/// How long looked-up Services are trusted: ClusterIPs never change for a Service's life, and
/// a Service created later (CoreDNS being installed) shows up within this.
const TTL: Duration = Duration::from_secs(10);

/// One Service's ClusterIP and ports (name, port, protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub cluster_ip: String,
    pub ports: Vec<(Option<String>, i32, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterServices {
    /// `default/kubernetes`
    pub api: Option<ServiceInfo>,
    /// `kube-system/kube-dns`
    pub dns: Option<ServiceInfo>,
}

#[derive(Default)]
pub struct Cache {
    last: Mutex<Option<(Instant, ClusterServices)>>,
}

fn info(svc: Service) -> Option<ServiceInfo> {
    let spec = svc.spec?;
    let ip = spec
        .cluster_ip
        .filter(|ip| !ip.is_empty() && ip != "None")?;
    Some(ServiceInfo {
        cluster_ip: ip,
        ports: spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.port, p.protocol.unwrap_or_else(|| "TCP".into())))
            .collect(),
    })
}

impl Cache {
    /// The Services, at most TTL old. On an API error the last known answer is kept (a
    /// partitioned node still starts containers with what it knew).
    pub async fn get(&self, client: &Client, reachable: bool) -> ClusterServices {
        let cached = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((at, s)) = &cached
            && (at.elapsed() < TTL || !reachable)
        {
            return s.clone();
        }
        if !reachable {
            return ClusterServices::default();
        }
        let lookup = |ns: &str, name: &str| {
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            let name = name.to_string();
            async move { api.get_opt(&name).await }
        };
        let (api, dns) = tokio::join!(
            lookup("default", "kubernetes"),
            lookup("kube-system", "kube-dns")
        );
        match (api, dns) {
            (Ok(api), Ok(dns)) => {
                let s = ClusterServices {
                    api: api.and_then(info),
                    dns: dns.and_then(info),
                };
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), s.clone()));
                s
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!("looking up the kubernetes and kube-dns Services: {e}");
                cached.map(|(_, s)| s).unwrap_or_default()
            }
        }
    }
}

/// The kubelet's Docker-link style variables for one Service (`kubernetes` →
/// KUBERNETES_SERVICE_HOST, KUBERNETES_PORT_443_TCP_ADDR, ...).
pub fn service_env(name: &str, s: &ServiceInfo) -> Vec<(String, String)> {
    let prefix = name.to_ascii_uppercase().replace('-', "_");
    let mut env = vec![(format!("{prefix}_SERVICE_HOST"), s.cluster_ip.clone())];
    let Some((_, first_port, first_proto)) = s.ports.first() else {
        return env;
    };
    env.push((format!("{prefix}_SERVICE_PORT"), first_port.to_string()));
    for (pname, port, _) in &s.ports {
        if let Some(n) = pname.as_deref().filter(|n| !n.is_empty()) {
            env.push((
                format!(
                    "{prefix}_SERVICE_PORT_{}",
                    n.to_ascii_uppercase().replace('-', "_")
                ),
                port.to_string(),
            ));
        }
    }
    let url = |proto: &str, port: i32| {
        format!("{}://{}:{port}", proto.to_ascii_lowercase(), s.cluster_ip)
    };
    env.push((format!("{prefix}_PORT"), url(first_proto, *first_port)));
    for (_, port, proto) in &s.ports {
        let p = proto.to_ascii_uppercase();
        let base = format!("{prefix}_PORT_{port}_{p}");
        env.push((base.clone(), url(proto, *port)));
        env.push((format!("{base}_PROTO"), proto.to_ascii_lowercase()));
        env.push((format!("{base}_PORT"), port.to_string()));
        env.push((format!("{base}_ADDR"), s.cluster_ip.clone()));
    }
    env
}

/// The kubelet's resolv.conf for a ClusterFirst pod, or None when the pod uses the node's
/// (dnsPolicy Default, or no cluster DNS Service, where the kubelet falls back to the node's).
pub fn resolv_conf(pod: &Pod, dns: Option<&ServiceInfo>) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirst" => !spec.host_network.unwrap_or(false),
        "ClusterFirstWithHostNet" => true,
        _ => false,
    };
    if !cluster_first {
        return None;
    }
    let dns = dns?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cfg = spec.dns_config.as_ref();
    let mut servers = vec![dns.cluster_ip.clone()];
    servers.extend(cfg.and_then(|c| c.nameservers.clone()).unwrap_or_default());
    let mut search = vec![
        format!("{ns}.svc.cluster.local"),
        "svc.cluster.local".to_string(),
        "cluster.local".to_string(),
    ];
    search.extend(cfg.and_then(|c| c.searches.clone()).unwrap_or_default());
    let mut options = vec!["ndots:5".to_string()];
    for o in cfg.and_then(|c| c.options.clone()).unwrap_or_default() {
        let Some(name) = o.name else { continue };
        options.retain(|x| x.split(':').next() != Some(name.as_str()));
        options.push(match o.value {
            Some(v) => format!("{name}:{v}"),
            None => name,
        });
    }
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    out.push_str(&format!("search {}\n", search.join(" ")));
    out.push_str(&format!("options {}\n", options.join(" ")));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_service_env_matches_the_kubelet() {
        let s = ServiceInfo {
            cluster_ip: "10.96.0.1".into(),
            ports: vec![(Some("https".into()), 443, "TCP".into())],
        };
        let env = service_env("kubernetes", &s);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://10.96.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP"), Some("tcp://10.96.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_ADDR"), Some("10.96.0.1"));
        assert_eq!(env.len(), 8);
    }

    #[test]
    fn cluster_first_resolv_conf() {
        let dns = ServiceInfo {
            cluster_ip: "10.96.0.10".into(),
            ports: vec![],
        };
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                namespace: Some("db".into()),
                ..Default::default()
            },
            spec: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&pod, Some(&dns)).unwrap(),
            "nameserver 10.96.0.10\nsearch db.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf(&pod, None), None);
        let mut default = pod.clone();
        if let Some(s) = default.spec.as_mut() {
            s.dns_policy = Some("Default".into());
        }
        assert_eq!(resolv_conf(&default, Some(&dns)), None);
    }
}
