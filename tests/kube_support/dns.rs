//! Names in the local cluster's DNS: CoreDNS behind the `kube-dns` Service (10.96.0.10, or
//! `LOCAL_CLUSTER_DNS` from `hack/local-cluster env`), queried the way a resolver in a Pod would,
//! so that tests connect to `<name>.<namespace>.svc.cluster.local` instead of a pod IP that goes
//! stale at the first re-placement. A minimal DNS client (A records over UDP) keeps the tests
//! free of a resolver crate and of the host's resolv.conf, which knows nothing of the cluster.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// The cluster's DNS domain (CoreDNS's `kubernetes cluster.local` zone).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The cluster DNS Service's address, port 53.
pub fn dns_server() -> SocketAddr {
    let ip = std::env::var("LOCAL_CLUSTER_DNS")
        .ok()
        .and_then(|v| v.parse::<Ipv4Addr>().ok())
        .unwrap_or(Ipv4Addr::new(10, 96, 0, 10));
    SocketAddr::from((ip, 53))
}

/// `<name>.<namespace>.svc.cluster.local`
pub fn service_fqdn(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// The A records of `fqdn` from the cluster DNS: empty for NXDOMAIN or no records (a Service
/// not created yet, a headless Service without ready endpoints). Err when the server does not
/// answer (three tries of one second) or answers something else than a name error.
pub async fn resolve_a(fqdn: &str) -> Result<Vec<Ipv4Addr>, String> {
    let server = dns_server();
    let sock = UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    let mut last = String::new();
    for attempt in 0..3u16 {
        let id = query_id().wrapping_add(attempt);
        let query = encode_query(id, fqdn)?;
        sock.send(&query)
            .await
            .map_err(|e| format!("send to {server}: {e}"))?;
        let mut buf = [0u8; 1500];
        match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
            Ok(Ok(n)) => match decode_answer(id, &buf[..n]) {
                Ok(Some(ips)) => return Ok(ips),
                // A stale reply to an earlier try: wait for ours in the next round.
                Ok(None) => last = "reply to another query".into(),
                Err(e) => return Err(format!("{fqdn} from {server}: {e}")),
            },
            Ok(Err(e)) => last = format!("recv: {e}"),
            Err(_) => last = "no reply within 1s".into(),
        }
    }
    Err(format!("{fqdn} from {server}: {last}"))
}

/// The ClusterIP (first A record) of Service `name` in `namespace`, None if it does not resolve.
pub async fn resolve_service(name: &str, namespace: &str) -> Option<Ipv4Addr> {
    resolve_a(&service_fqdn(name, namespace))
        .await
        .ok()?
        .into_iter()
        .next()
}

/// `<name>.<namespace>.svc.cluster.local:<port>`, resolved; waits up to `timeout` for the name
/// to exist (CoreDNS sees a new Service within a second) and panics after.
pub async fn service_addr(name: &str, namespace: &str, port: u16, timeout: Duration) -> SocketAddr {
    let fqdn = service_fqdn(name, namespace);
    let ip = super::wait_for(&format!("{fqdn} in the cluster DNS"), timeout, || {
        resolve_service(name, namespace)
    })
    .await;
    SocketAddr::from((ip, port))
}

fn query_id() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.subsec_nanos() >> 8) as u16)
        .unwrap_or(0x5eed)
}

/// A standard query (recursion desired) for one A record of `fqdn`.
fn encode_query(id: u16, fqdn: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + fqdn.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // flags: RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question, no other records
    for label in fqdn.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("bad DNS name {fqdn:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // type A, class IN
    Ok(q)
}

/// The A records of a reply; None if it answers another query id.
fn decode_answer(id: u16, msg: &[u8]) -> Result<Option<Vec<Ipv4Addr>>, String> {
    let u16_at = |i: usize| -> Result<u16, String> {
        msg.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated reply".to_string())
    };
    if u16_at(0)? != id {
        return Ok(None);
    }
    let flags = u16_at(2)?;
    match flags & 0x000f {
        0 => {}
        3 => return Ok(Some(Vec::new())), // NXDOMAIN
        rcode => return Err(format!("rcode {rcode}")),
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4; // type, class
    }
    let mut ips = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let (rtype, rdlen) = (u16_at(at)?, u16_at(at + 8)? as usize);
        let rdata = msg
            .get(at + 10..at + 10 + rdlen)
            .ok_or("truncated record")?;
        if rtype == 1 && rdlen == 4 {
            ips.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        at += 10 + rdlen;
    }
    Ok(Some(ips))
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *msg.get(at).ok_or("truncated name")? as usize;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2), // pointer: the name ends here
            l => at += 1 + l,
        }
    }
}
