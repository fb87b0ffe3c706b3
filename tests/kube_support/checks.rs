//! Checks of a running RedisCluster from live Pods, Nodes and what every member reports:
//! [`check_cluster`] for a freshly formed cluster (with writes through `redis-cli -c`), and
//! [`check_recovered`] / [`wait_recovered`] for a cluster that must have healed after a fault.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use redis_operator::crd::RedisCluster;
use redis_operator::redis::model::{NodeObservation, observe_node};
use redis_operator::redis::{AdminOptions, Auth, Timeouts};

use super::{
    CLUSTER_LABEL, MEMBER_LABEL, SHARD_LABEL, ZONE_LABEL, condition, password, pod_ip,
    redis_cli_as, redis_cli_result,
};

/// The Pods of cluster `name` that are not terminating.
pub async fn member_pods(client: &Client, ns: &str, name: &str) -> Result<Vec<Pod>, kube::Error> {
    Ok(Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}")))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Every Node that exists, with its zone label ("" when it has none).
pub async fn node_zones(client: &Client) -> Result<BTreeMap<String, String>, kube::Error> {
    Ok(Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| {
            let zone = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL))
                .cloned()
                .unwrap_or_default();
            (n.metadata.name.unwrap_or_default(), zone)
        })
        .collect())
}

/// The node a Pod is bound to ("" before scheduling).
pub fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// A label of a Pod ("" when absent).
pub fn label(p: &Pod, key: &str) -> String {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .cloned()
        .unwrap_or_default()
}

/// A command through a cluster-aware client (`redis-cli -c`). Like any client it retries a
/// failed connection (twice, a second apart); each failure is printed, and a third one fails
/// the test with redis-cli's own words.
pub fn cli(ip: &str, pass: &str, args: &[&str]) -> String {
    let mut failures = Vec::new();
    for _ in 0..3 {
        match redis_cli_result(ip, pass, true, args) {
            Ok(out) => return out,
            Err(e) => {
                eprintln!("redis-cli {args:?} on {ip}: {e}");
                failures.push(e);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    panic!("redis-cli {args:?} on {ip} failed 3 times: {failures:?}")
}

/// Like [`cli`], but `None` when the member does not answer (yet).
pub fn cli_soft(ip: &str, pass: &str, args: &[&str]) -> Option<String> {
    redis_cli_as(ip, pass, false, args)
}

/// Placement invariants from live Pods and Nodes and from CLUSTER NODES, plus writes and reads
/// on every shard through a cluster-aware client.
pub async fn check_cluster(
    client: &Client,
    ns: &str,
    name: &str,
    leaders: usize,
    followers: usize,
) {
    let pods = member_pods(client, ns, name).await.unwrap();
    assert_eq!(pods.len(), leaders * (1 + followers), "member pods");
    let nodes = node_zones(client).await.unwrap();
    let ip_to_pod: BTreeMap<String, &Pod> = pods
        .iter()
        .filter_map(|p| Some((p.status.as_ref()?.pod_ip.clone()?, p)))
        .collect();

    // Identities: every (shard, member) pair held by exactly one Pod, 1 + F members per shard.
    let identities: BTreeSet<(String, String)> = pods
        .iter()
        .map(|p| (label(p, SHARD_LABEL), label(p, MEMBER_LABEL)))
        .collect();
    assert_eq!(
        identities.len(),
        pods.len(),
        "two pods share a shard/member identity: {identities:?}"
    );
    for shard in 0..leaders {
        let members: Vec<_> = identities
            .iter()
            .filter(|(s, _)| *s == shard.to_string())
            .map(|(_, m)| m.clone())
            .collect();
        let want: Vec<String> = (0..=followers).map(|m| m.to_string()).collect();
        assert_eq!(members, want, "shard {shard} member ordinals");
    }

    // Pods: one member per node, shard members in distinct zones.
    let used_nodes: BTreeSet<String> = pods.iter().map(node_of).collect();
    assert_eq!(used_nodes.len(), pods.len(), "two members share a node");

    let pass = password(client, ns, name).await;
    let any_ip = ip_to_pod.keys().next().unwrap().clone();
    let nodes_txt = cli(&any_ip, &pass, &["cluster", "nodes"]);
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new(); // master id -> zones (leader first)
    let mut id_zone = BTreeMap::new();
    let mut masters = Vec::new();
    for line in nodes_txt.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ip = f[1].split(':').next().unwrap();
        let pod = ip_to_pod
            .get(ip)
            .unwrap_or_else(|| panic!("CLUSTER NODES lists {ip}, not a member pod"));
        let zone = nodes[&node_of(pod)].clone();
        id_zone.insert(f[0].to_string(), zone.clone());
        if f[2].contains("master") {
            assert!(f.len() > 8, "master {} without slots", f[0]);
            masters.push((f[0].to_string(), zone));
        } else {
            shards.entry(f[3].to_string()).or_default().push(zone);
        }
        assert!(!f[2].contains("fail"), "node flagged failing: {line}");
    }
    assert_eq!(masters.len(), leaders, "masters with slots");
    let mut leaders_per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for (id, zone) in &masters {
        *leaders_per_zone.entry(zone.clone()).or_default() += 1;
        let mut zones = vec![zone.clone()];
        zones.extend(shards.get(id).cloned().unwrap_or_default());
        assert_eq!(zones.len(), 1 + followers, "shard of {id}: members");
        let distinct: BTreeSet<&String> = zones.iter().collect();
        assert_eq!(
            distinct.len(),
            zones.len(),
            "shard of {id} has two members in one zone: {zones:?}"
        );
    }
    let zone_count = nodes.values().collect::<BTreeSet<_>>().len();
    let cap = leaders.div_ceil(zone_count);
    assert!(
        leaders_per_zone.values().all(|c| *c <= cap),
        "leaders per zone {leaders_per_zone:?} exceed {cap}"
    );

    // One cluster: every member lists exactly the members, and every follower's link is up.
    for ip in ip_to_pod.keys() {
        let seen = cli(ip, &pass, &["cluster", "nodes"]);
        assert_eq!(
            seen.lines().count(),
            pods.len(),
            "{ip} knows other nodes than the members: {seen}"
        );
        let repl = cli(ip, &pass, &["info", "replication"]);
        if repl.contains("role:slave") {
            assert!(
                repl.contains("master_link_status:up"),
                "{ip} follower link down: {repl}"
            );
        }
    }

    let info = cli(&any_ip, &pass, &["cluster", "info"]);
    assert!(
        info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384"),
        "{info}"
    );

    // Keys on every shard through redirects (-c): 64 keys cover every master with high probability;
    // check each master then holds some.
    for i in 0..64 {
        assert_eq!(
            cli(
                &any_ip,
                &pass,
                &["set", &format!("key-{i}"), &format!("v{i}")]
            ),
            "OK"
        );
    }
    for i in 0..64 {
        assert_eq!(
            cli(&any_ip, &pass, &["get", &format!("key-{i}")]),
            format!("v{i}")
        );
    }
    for (id, _) in &masters {
        let ip = nodes_txt
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_string();
        let n: u64 = cli(&ip, &pass, &["dbsize"]).parse().unwrap();
        assert!(n > 0, "shard master {id} holds no keys");
    }
}

/// One member of a cluster as [`check_recovered`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Pod name.
    pub pod: String,
    /// Pod IP.
    pub ip: String,
    /// Node name.
    pub node: String,
    /// The node's zone.
    pub zone: String,
    /// The Pod's shard label.
    pub shard: String,
    /// The Pod's member label.
    pub ordinal: String,
    /// Its Redis node id, from its own `myself` line.
    pub id: String,
    /// Whether it is a master serving slots.
    pub leader: bool,
    /// The master it replicates (followers).
    pub master_id: Option<String>,
}

impl Member {
    /// Its Redis client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip.parse().expect("pod IP"), 6379)
    }
}

/// Every member of a cluster, sorted by (shard, ordinal).
#[derive(Clone, Debug)]
pub struct Members(pub Vec<Member>);

impl Members {
    /// The master of the pods labelled shard `shard`.
    pub fn leader(&self, shard: usize) -> &Member {
        let s = shard.to_string();
        self.0
            .iter()
            .find(|m| m.shard == s && m.leader)
            .unwrap_or_else(|| panic!("shard {shard} has no leader: {self:?}"))
    }

    /// The followers among the pods labelled shard `shard`.
    pub fn followers(&self, shard: usize) -> Vec<&Member> {
        let s = shard.to_string();
        self.0
            .iter()
            .filter(|m| m.shard == s && !m.leader)
            .collect()
    }

    /// Every node id.
    pub fn ids(&self) -> BTreeSet<String> {
        self.0.iter().map(|m| m.id.clone()).collect()
    }

    /// Every client address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.0.iter().map(Member::addr).collect()
    }

    /// The member with this pod name.
    pub fn pod(&self, name: &str) -> Option<&Member> {
        self.0.iter().find(|m| m.pod == name)
    }
}

/// Admin options for test connections to members: the cluster's password, short timeouts.
pub fn member_admin(password: &str) -> AdminOptions {
    AdminOptions {
        auth: Some(Auth {
            username: None,
            password: password.to_owned(),
        }),
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            command: Duration::from_secs(3),
            migrate: Duration::from_secs(3),
            ..Timeouts::default()
        },
        tls: None,
    }
}

/// Client addresses (port 6379) of the cluster's non-terminating Pods that have an IP.
pub async fn member_addrs(client: &Client, ns: &str, name: &str) -> Vec<SocketAddr> {
    member_pods(client, ns, name)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|p| Some(SocketAddr::new(pod_ip(p)?.parse().ok()?, 6379)))
        .collect()
}

/// The invariants of a healthy cluster after a fault, from live Pods and Nodes and from every
/// member's own `CLUSTER NODES`, `CLUSTER INFO` and `INFO replication` (asked over TLS when
/// the cluster has `spec.tls`, see [`super::tls::cluster_admin`]); the first violation, in
/// words, as the error:
///
/// * exactly L × (1 + F) member Pods, every (shard, member) identity once (shards 0..L with
///   1 + F members each), one per node, each on a node with a zone;
/// * every member answers and announces its Pod IP; the members' node ids are distinct;
/// * every member lists exactly the members (same ids at their Pods' IPs, no stale identity)
///   and flags none of them `fail`, `fail?`, `noaddr` or `handshake`, and all agree on each
///   member's role, master and slots;
/// * `cluster_state:ok` and 16384 slots ok everywhere, every follower's link up;
/// * L masters serving slots, each with F followers, a shard's Pods sharing one shard label
///   (distinct per shard) and sitting in distinct zones;
/// * at most ⌈L/Z⌉ leaders per zone, Z being the zones of the Nodes that exist.
pub async fn check_recovered(
    client: &Client,
    ns: &str,
    name: &str,
    leaders: usize,
    followers: usize,
) -> Result<Members, String> {
    check_recovered_without(client, ns, name, leaders, followers, &[]).await
}

/// [`check_recovered`] while `lost_zones` have no ready node: no member may run there, and Z
/// in the leader cap counts only the other zones.
pub async fn check_recovered_without(
    client: &Client,
    ns: &str,
    name: &str,
    leaders: usize,
    followers: usize,
    lost_zones: &[String],
) -> Result<Members, String> {
    let pods = member_pods(client, ns, name)
        .await
        .map_err(|e| format!("list pods: {e}"))?;
    let want = leaders * (1 + followers);
    if pods.len() != want {
        return Err(format!("{} member pods, want {want}", pods.len()));
    }
    let zones_of = node_zones(client)
        .await
        .map_err(|e| format!("list nodes: {e}"))?;
    let zone_count = zones_of
        .values()
        .filter(|z| !z.is_empty() && !lost_zones.contains(*z))
        .collect::<BTreeSet<_>>()
        .len();
    // Over TLS for a TLS cluster: the settings come from its spec and Secret.
    let admin = super::tls::cluster_admin(client, ns, name).await?;

    let mut members = Vec::new();
    for p in &pods {
        let pod = p.metadata.name.clone().unwrap_or_default();
        let ip = pod_ip(p).ok_or_else(|| format!("{pod} has no IP"))?;
        let node = node_of(p);
        let zone = zones_of.get(&node).cloned().unwrap_or_default();
        if zone.is_empty() {
            return Err(format!("{pod} is on {node:?}, which has no zone"));
        }
        if lost_zones.contains(&zone) {
            return Err(format!("{pod} is on {node} in the unavailable zone {zone}"));
        }
        members.push(Member {
            pod,
            ip,
            node,
            zone,
            shard: label(p, SHARD_LABEL),
            ordinal: label(p, MEMBER_LABEL),
            id: String::new(),
            leader: false,
            master_id: None,
        });
    }
    members.sort_by(|a, b| (&a.shard, &a.ordinal).cmp(&(&b.shard, &b.ordinal)));
    let identities: BTreeSet<(String, String)> = members
        .iter()
        .map(|m| (m.shard.clone(), m.ordinal.clone()))
        .collect();
    // A member re-placed while its old PVC is kept (Retain) takes the lowest member index no
    // claim holds, so the indices of a shard need not be 0..=F; each identity is held once.
    let mut per_shard: BTreeMap<&str, usize> = BTreeMap::new();
    for (shard, _) in &identities {
        *per_shard.entry(shard.as_str()).or_default() += 1;
    }
    let shards: BTreeSet<String> = (0..leaders).map(|s| s.to_string()).collect();
    if identities.len() != members.len()
        || per_shard
            .keys()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            != shards
        || per_shard.values().any(|n| *n != 1 + followers)
    {
        return Err(format!(
            "member identities {identities:?}, want shards 0..{leaders} with {} distinct members each",
            1 + followers
        ));
    }
    if members
        .iter()
        .map(|m| &m.node)
        .collect::<BTreeSet<_>>()
        .len()
        != members.len()
    {
        return Err("two members share a node".to_owned());
    }

    let observations: Vec<Result<NodeObservation, String>> =
        futures::future::join_all(members.iter().map(|m| {
            let admin = admin.clone();
            async move {
                observe_node(m.addr(), &admin)
                    .await
                    .map_err(|e| format!("{} ({}) does not answer: {e}", m.pod, m.ip))
            }
        }))
        .await;
    let observations: Vec<NodeObservation> = observations.into_iter().collect::<Result<_, _>>()?;
    for (m, o) in members.iter_mut().zip(&observations) {
        m.id = o.id().to_string();
        m.leader = o.is_serving_master();
        m.master_id = o.master_id().map(ToString::to_string);
        if o.myself.addr.map(|a| a.ip().to_string()) != Some(m.ip.clone()) {
            return Err(format!(
                "{} announces {:?}, not its Pod IP {}",
                m.pod, o.myself.raw_addr, m.ip
            ));
        }
    }
    let ip_of_id: BTreeMap<&str, &str> = members
        .iter()
        .map(|m| (m.id.as_str(), m.ip.as_str()))
        .collect();
    if ip_of_id.len() != members.len() {
        return Err("two members have the same node id".to_owned());
    }

    for (m, o) in members.iter().zip(&observations) {
        let entries: Vec<_> = std::iter::once(&o.myself).chain(&o.peers).collect();
        let seen: BTreeSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        if entries.len() != members.len() || seen.len() != members.len() {
            let strangers: Vec<String> = entries
                .iter()
                .filter(|e| !ip_of_id.contains_key(e.id.as_str()))
                .map(|e| format!("{} {} {:?}", e.id, e.raw_addr, e.flags))
                .collect();
            let absent: Vec<&str> = ip_of_id
                .keys()
                .filter(|id| !seen.contains(*id))
                .copied()
                .collect();
            return Err(format!(
                "{} lists {} nodes, want exactly the {} members (not members: {strangers:?}; members it lacks: {absent:?})",
                m.pod,
                entries.len(),
                members.len()
            ));
        }
        for e in &entries {
            let Some(ip) = ip_of_id.get(e.id.as_str()) else {
                return Err(format!(
                    "{} lists {} ({}), which is no member (stale identity)",
                    m.pod, e.id, e.raw_addr
                ));
            };
            let f = &e.flags;
            if f.fail || f.pfail || f.noaddr || f.handshake {
                return Err(format!("{} flags {} ({}) {f:?}", m.pod, e.id, e.raw_addr));
            }
            if e.addr.map(|a| a.ip().to_string()).as_deref() != Some(*ip) {
                return Err(format!(
                    "{} lists {} at {}, its Pod IP is {ip}",
                    m.pod, e.id, e.raw_addr
                ));
            }
            let subject = observations
                .iter()
                .find(|s| s.id() == &e.id)
                .map(|s| &s.myself);
            if let Some(s) = subject
                && (s.is_master() != e.is_master()
                    || s.master_id != e.master_id
                    || s.slots != e.slots)
            {
                return Err(format!(
                    "{} disagrees with {} about its role, master or slots",
                    m.pod, e.id
                ));
            }
        }
        if !o.info.state_ok || o.info.slots_ok != 16384 {
            return Err(format!(
                "{}: cluster_state ok={} with {} slots ok",
                m.pod, o.info.state_ok, o.info.slots_ok
            ));
        }
        if let Some(link) = o.replication.replica_link()
            && !link.link_up
        {
            return Err(format!("{}: follower link down", m.pod));
        }
        if o.is_master() && !o.is_serving_master() {
            return Err(format!("{} is a master without slots", m.pod));
        }
    }

    let masters: Vec<&Member> = members.iter().filter(|m| m.leader).collect();
    if masters.len() != leaders {
        return Err(format!(
            "{} masters with slots, want {leaders}",
            masters.len()
        ));
    }
    let mut shard_labels = BTreeSet::new();
    let mut leaders_per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for master in &masters {
        *leaders_per_zone.entry(&master.zone).or_default() += 1;
        let shard: Vec<&Member> = members
            .iter()
            .filter(|m| m.id == master.id || m.master_id.as_deref() == Some(master.id.as_str()))
            .collect();
        if shard.len() != 1 + followers {
            return Err(format!(
                "shard of {} has {} members, want {}",
                master.pod,
                shard.len(),
                1 + followers
            ));
        }
        let labels: BTreeSet<&str> = shard.iter().map(|m| m.shard.as_str()).collect();
        let zones: BTreeSet<&str> = shard.iter().map(|m| m.zone.as_str()).collect();
        if labels.len() != 1 || !shard_labels.insert(master.shard.clone()) {
            return Err(format!(
                "shard of {} mixes or reuses shard labels {labels:?}",
                master.pod
            ));
        }
        if zones.len() != shard.len() {
            return Err(format!(
                "shard of {} has two members in one zone",
                master.pod
            ));
        }
    }
    if zone_count == 0 {
        return Err("no node has a zone".to_owned());
    }
    let cap = leaders.div_ceil(zone_count);
    if leaders_per_zone.values().any(|c| *c > cap) {
        return Err(format!(
            "leaders per zone {leaders_per_zone:?} exceed ⌈{leaders}/{zone_count}⌉ = {cap}"
        ));
    }
    Ok(Members(members))
}

/// Waits until the RedisCluster is `Ready=True` and [`check_recovered`] passes (both in the
/// same poll, once a second), handing the members' current addresses to `on_poll` each time
/// (e.g. as new seeds for a writer). Panics at the deadline with the last violation.
pub async fn wait_recovered(
    client: &Client,
    ns: &str,
    name: &str,
    shape: (usize, usize),
    timeout: Duration,
    on_poll: impl FnMut(Vec<SocketAddr>),
) -> Members {
    let until = Recovery {
        timeout,
        poll: Duration::from_secs(1),
        require_ready: true,
    };
    match until_recovered(client, ns, name, shape, until, on_poll).await {
        Ok((members, after)) => {
            eprintln!("{ns}/{name} recovered after {after:?}");
            members
        }
        Err(e) => panic!("{e}"),
    }
}

/// How [`until_recovered`] waits.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    /// Give up after this long.
    pub timeout: Duration,
    /// Pause between two polls.
    pub poll: Duration,
    /// Whether the RedisCluster's `Ready=True` is required besides [`check_recovered`] (a
    /// cluster whose operator is gone has a stale status).
    pub require_ready: bool,
}

/// Polls until [`check_recovered`] passes (with `Ready=True` when `until.require_ready`), handing
/// the members' current addresses to `on_poll` each time. The members and the time it took;
/// at the deadline the last violation (with the conditions and the operator log) as the error.
pub async fn until_recovered(
    client: &Client,
    ns: &str,
    name: &str,
    shape: (usize, usize),
    until: Recovery,
    on_poll: impl FnMut(Vec<SocketAddr>),
) -> Result<(Members, Duration), String> {
    until_recovered_without(client, ns, name, shape, &[], until, on_poll).await
}

/// [`until_recovered`] with [`check_recovered_without`] `lost_zones`.
pub async fn until_recovered_without(
    client: &Client,
    ns: &str,
    name: &str,
    (leaders, followers): (usize, usize),
    lost_zones: &[String],
    until: Recovery,
    mut on_poll: impl FnMut(Vec<SocketAddr>),
) -> Result<(Members, Duration), String> {
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), ns);
    let begun = Instant::now();
    let timeout = until.timeout;
    let mut last = String::from("not checked yet");
    while begun.elapsed() < timeout {
        on_poll(member_addrs(client, ns, name).await);
        let ready = match api.get_opt(name).await {
            Ok(Some(rc)) => condition(&rc, "Ready"),
            Ok(None) => None,
            Err(e) => Some(("?".into(), "get failed".into(), e.to_string())),
        };
        match ready {
            Some((status, ..)) if status == "True" || !until.require_ready => {
                match check_recovered_without(client, ns, name, leaders, followers, lost_zones)
                    .await
                {
                    Ok(members) => return Ok((members, begun.elapsed())),
                    Err(e) => last = format!("Ready={status} but {e}"),
                }
            }
            other => last = format!("Ready is {other:?}"),
        }
        tokio::time::sleep(until.poll).await;
    }
    let status = api
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|rc| rc.status)
        .map(|s| format!("{:?}", s.conditions))
        .unwrap_or_default();
    Err(format!(
        "{ns}/{name} did not recover within {timeout:?}: {last}\nconditions: {status}\noperator log: /tmp/redis-operator-{ns}.log"
    ))
}
