//! The pod sandbox: its network namespace and IP, the /etc/hosts and /etc/hostname files
//! every container shares, and tearing it all down again.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use tracing::info;

use super::process::signal_group;
use super::worker::Worker;
use crate::ids::random_hex;
use crate::netns::{self, SHORT_ID_LEN, Sandbox};
use crate::node::NodeState;

fn hosts_file(ip: Ipv4Addr, pod: &Pod) -> String {
    let (hostname, fqdn) = hostnames(pod);
    let names = if fqdn == hostname {
        hostname
    } else {
        format!("{fqdn}\t{hostname}")
    };
    format!(
        "# Kubernetes-managed hosts file (node-agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{names}\n"
    )
}

pub(super) fn hostnames(pod: &Pod) -> (String, String) {
    let spec = pod.spec.as_ref();
    let mut hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    hostname.truncate(63);
    let fqdn = match spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(sub) => format!(
            "{hostname}.{sub}.{}.svc.cluster.local",
            pod.metadata.namespace.as_deref().unwrap_or("default")
        ),
        None => hostname.clone(),
    };
    (hostname, fqdn)
}

impl Worker {
    pub(super) async fn create_sandbox(&mut self) -> Result<(), String> {
        let host = self
            .node
            .ipam
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allocate()
            .ok_or("no free pod IP on this node")?;
        let ip = self.node.pod_ip(host);
        let sb = Sandbox::for_id(&random_hex("sandbox", SHORT_ID_LEN), ip);
        self.res.lock().unwrap_or_else(|e| e.into_inner()).sandbox = Some(sb.clone());
        let _ = std::fs::write(self.dir.join("sandbox"), sb.to_record());
        let up = self.node.state() == NodeState::Up;
        if let Err(e) = self.node.net.create_sandbox(&sb, up).await {
            self.node
                .ipam
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(host);
            self.res.lock().unwrap_or_else(|e| e.into_inner()).sandbox = None;
            let _ = std::fs::remove_file(self.dir.join("sandbox"));
            return Err(format!("{e:#}"));
        }
        // A partition may have started while the sandbox was being built.
        if self.node.state() != NodeState::Up {
            let _ = netns::set_link(&sb.veth, false).await;
        }
        let _ = std::fs::write(self.dir.join("etc-hosts"), hosts_file(ip, &self.pod));
        let _ = std::fs::write(
            self.dir.join("etc-hostname"),
            format!("{}\n", hostnames(&self.pod).0),
        );
        info!(pod = %self.key, ip = %ip, netns = %sb.netns, "sandbox ready");
        self.sandbox = Some(sb);
        self.pod_ip = Some(ip);
        Ok(())
    }

    pub(super) async fn teardown(&mut self) {
        let groups = std::mem::take(&mut self.res.lock().unwrap_or_else(|e| e.into_inner()).groups);
        for pid in groups.values() {
            signal_group(*pid, rustix::process::Signal::KILL);
        }
        if let Some(sb) = self.sandbox.take() {
            netns::destroy_sandbox(&sb).await;
            self.node
                .ipam
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(sb.ip.octets()[3]);
            self.res.lock().unwrap_or_else(|e| e.into_inner()).sandbox = None;
            let _ = std::fs::remove_file(self.dir.join("sandbox"));
            info!(pod = %self.key, "sandbox removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_names_the_pod() {
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("redis-0".into()),
                namespace: Some("db".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                subdomain: Some("redis".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let h = hosts_file(Ipv4Addr::new(10, 244, 1, 7), &pod);
        assert!(
            h.contains("10.244.1.7\tredis-0.redis.db.svc.cluster.local\tredis-0\n"),
            "{h}"
        );
    }
}
