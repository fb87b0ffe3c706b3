//! The soak's world: one namespace, one operator process, the RedisClusters under test (a 3 × 1
//! with PVCs, optionally a 4 × 2 cache without persistence), an acknowledged writer per cluster,
//! a failover counter per cluster, and the recovery check every round ends with.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use redis_operator::crd::RedisCluster;
use redis_operator::redis::model::observe_node;
use serde_json::{Value, json};

use crate::kube_support::*;
use crate::support::ack_writer::{AckWriter, AckWriterHandle, AckWriterOptions};

/// How long one round may take to recover after its last fault is healed: a reshard or a
/// rollout started by the round must also finish in it.
pub const ROUND_RECOVERY: Duration = Duration::from_secs(480);
/// How long a round waits for recovery before it looks for a loss of quorum that needs the
/// break-glass: a partitioned zone's leaders come back with their data well within it.
pub const QUORUM_WAIT: Duration = Duration::from_secs(120);

/// One RedisCluster of the soak.
pub struct SoakCluster {
    pub name: String,
    /// The (leaders, followers) it must have when recovered; a reshard round changes it.
    pub shape: (usize, usize),
    pub pvc: bool,
    pub pass: String,
    pub writer: Option<AckWriterHandle>,
    /// From the last recovery check.
    pub members: Members,
    /// Flipped by every rollout round (the restart-only `tcp-backlog` toggles 511 ↔ 512).
    pub rollouts: u64,
    /// Masters that were replicas in the sample before (Redis's or the operator's failovers).
    pub failovers: Arc<AtomicU64>,
    /// Where the failover counter looks.
    pub sample_addrs: Arc<Mutex<Vec<SocketAddr>>>,
}

/// The soak's namespace, operator and clusters.
pub struct World {
    pub client: Client,
    pub ns: TestNamespace,
    /// Behind a lock: operator faults kill, restart and pause it while other faults run.
    pub operator: Mutex<Option<Operator>>,
    pub clusters: Vec<SoakCluster>,
    pub zones: Vec<String>,
    pub stop: Arc<AtomicBool>,
    _cleanup: DeleteOnPanic,
}

/// The clusters `SOAK_CLUSTERS` names: `pvc` (3 × 1 with PVCs) and `cache` (4 × 2, no
/// persistence), comma-separated.
pub fn cluster_specs(which: &str) -> Vec<(String, (usize, usize), Value)> {
    let mut out = Vec::new();
    for w in which.split(',').map(str::trim) {
        match w {
            "pvc" => out.push(("soak-pvc".to_owned(), (3, 1), json!({}))),
            "cache" => out.push((
                "soak-cache".to_owned(),
                (4, 2),
                json!({"storage": null, "config": {"appendonly": "no", "save": "\"\""}}),
            )),
            "" => {}
            other => panic!("SOAK_CLUSTERS: unknown cluster kind {other:?} (pvc, cache)"),
        }
    }
    assert!(!out.is_empty(), "SOAK_CLUSTERS names no cluster");
    out
}

impl World {
    /// Creates the namespace, the operator and the clusters, waits until they are Ready and
    /// recovered, and starts one writer per cluster (bounded by `max_duration`).
    pub async fn start(which: &str, max_duration: Duration) -> World {
        let client = client().await;
        let ns = TestNamespace::new(&client, "soak").await;
        let cleanup = DeleteOnPanic(ns.name.clone());
        let operator = Operator::start(&ns.name);
        let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
        let specs = cluster_specs(which);
        for (name, (l, f), extra) in &specs {
            api.create(
                &PostParams::default(),
                &cluster(name, *l as i32, *f as i32, extra.clone()),
            )
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        }
        let zones: Vec<String> = {
            let mut z: Vec<String> = node_zones(&client).await.unwrap().into_values().collect();
            z.sort();
            z.dedup();
            z
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut clusters = Vec::new();
        for (name, shape, extra) in specs {
            wait_ready(&api, &name, ROUND_RECOVERY).await;
            let pass = password(&client, &ns.name, &name).await;
            let until = Recovery {
                timeout: ROUND_RECOVERY,
                poll: Duration::from_secs(1),
                require_ready: true,
            };
            let (members, _) = until_recovered(&client, &ns.name, &name, shape, until, |_| {})
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let failovers = Arc::new(AtomicU64::new(0));
            let sample_addrs = Arc::new(Mutex::new(members.addrs()));
            tokio::spawn(count_failovers(
                sample_addrs.clone(),
                pass.clone(),
                failovers.clone(),
                stop.clone(),
            ));
            clusters.push(SoakCluster {
                pvc: extra.get("storage") != Some(&Value::Null),
                name,
                shape,
                pass,
                writer: None,
                members,
                rollouts: 0,
                failovers,
                sample_addrs,
            });
        }
        let mut world = World {
            client,
            ns,
            operator: Mutex::new(Some(operator)),
            clusters,
            zones,
            stop,
            _cleanup: cleanup,
        };
        for i in 0..world.clusters.len() {
            let writer = world.start_writer(i, max_duration).await;
            world.clusters[i].writer.replace(writer);
        }
        world
    }

    async fn start_writer(&self, i: usize, max_duration: Duration) -> AckWriterHandle {
        let c = &self.clusters[i];
        let service = crate::kube_support::dns::service_addr(
            &c.name,
            &self.ns.name,
            6379,
            Duration::from_secs(60),
        )
        .await;
        let opts = AckWriterOptions {
            max_duration,
            max_writes: u64::MAX,
            // 4 tags per master at 20 writes/s each: a few million keys over a long soak.
            interval: Duration::from_millis(50),
            ..AckWriterOptions::default()
        };
        let writer = AckWriter::start(vec![service], c.pass.clone(), opts)
            .await
            .unwrap_or_else(|e| panic!("{}: writer: {e}", c.name));
        writer.add_seeds(c.members.addrs());
        writer
    }

    pub fn api(&self) -> Api<RedisCluster> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// What an SRE does when a cluster stays `Degraded QuorumLost` after its faults healed
    /// (reference S8: a zone that held half the leaders crashed, and without persistence its
    /// leaders came back empty and are held by the start gate; nothing can elect): gives the
    /// break-glass the condition's message names (`accept-takeover=<ids>`). Returns what was
    /// given, per cluster.
    pub async fn accept_takeover_if_quorum_lost(&self) -> Vec<String> {
        let mut given = Vec::new();
        for c in &self.clusters {
            let Ok(rc) = self.api().get(&c.name).await else {
                continue;
            };
            let Some((status, reason, message)) = condition(&rc, "Degraded") else {
                continue;
            };
            if status != "True" || reason != "QuorumLost" {
                continue;
            }
            let Some(ids) = message
                .split("accept-takeover=")
                .nth(1)
                // Node ids and commas only: the message goes on after them ("…,550ae2cf; 4096
                // slot(s) …"), and a trailing ';' made an annotation the operator ignored.
                .map(|rest| {
                    let end = rest
                        .find(|ch: char| !(ch.is_ascii_hexdigit() || ch == ','))
                        .unwrap_or(rest.len());
                    rest[..end].trim_end_matches(',')
                })
                .filter(|ids| !ids.is_empty())
            else {
                continue;
            };
            let patch = json!({"metadata": {"annotations": {
                "redis.redis-operator.dev/accept-takeover": ids
            }}});
            if self
                .api()
                .patch(&c.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                given.push(format!(
                    "{}: accept-takeover={ids} (QuorumLost after the heal)",
                    c.name
                ));
            }
        }
        given
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Merges `spec` into cluster `i`'s spec.
    pub async fn patch_spec(&self, i: usize, spec: Value) -> Result<(), String> {
        self.api()
            .patch(
                &self.clusters[i].name,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("patch {}: {e}", self.clusters[i].name))
    }

    /// (pod name → container pid, pod name → claim name) of every member Pod now, read before a
    /// fault so that signals can still be sent while the API server is unreachable.
    pub async fn pod_facts(&self) -> (HashMap<String, u32>, HashMap<String, String>) {
        let pods = self
            .pods()
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mut pids = HashMap::new();
        let mut claims = HashMap::new();
        for p in &pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            if let Some(pid) = container_pid(p) {
                pids.insert(name.clone(), pid);
            }
            let claim = p
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .and_then(|vs| {
                    vs.iter().find_map(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .map(|c| c.claim_name.clone())
                    })
                });
            if let Some(claim) = claim {
                claims.insert(name, claim);
            }
        }
        (pids, claims)
    }

    /// Waits until every cluster is Ready, passes [`check_recovered`] with its shape, has no
    /// open slot and is no longer Reconciling. The time it took, or what was still wrong.
    pub async fn recovered(&mut self, timeout: Duration) -> Result<Duration, String> {
        let begun = Instant::now();
        for i in 0..self.clusters.len() {
            let left = timeout.saturating_sub(begun.elapsed());
            let members = self.recovered_one(i, left).await?;
            self.clusters[i].members = members;
        }
        Ok(begun.elapsed())
    }

    async fn recovered_one(&self, i: usize, timeout: Duration) -> Result<Members, String> {
        let c = &self.clusters[i];
        let begun = Instant::now();
        let mut last = String::new();
        while begun.elapsed() < timeout {
            let until = Recovery {
                timeout: timeout.saturating_sub(begun.elapsed()),
                poll: Duration::from_secs(2),
                require_ready: true,
            };
            let writer = c.writer.as_ref();
            let addrs = c.sample_addrs.clone();
            let (members, _) =
                until_recovered(&self.client, &self.ns.name, &c.name, c.shape, until, |a| {
                    if let Some(w) = writer {
                        w.add_seeds(a.iter().copied());
                    }
                    if !a.is_empty()
                        && let Ok(mut s) = addrs.lock()
                    {
                        *s = a;
                    }
                })
                .await?;
            match self.settled(i, &members).await {
                Ok(()) => return Ok(members),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Err(format!("{}: recovered but never settled: {last}", c.name))
    }

    /// No open slot on any member, and the RedisCluster is not Reconciling.
    async fn settled(&self, i: usize, members: &Members) -> Result<(), String> {
        let c = &self.clusters[i];
        for m in &members.0 {
            let obs = observe_node(m.addr(), &member_admin(&c.pass))
                .await
                .map_err(|e| format!("{}: {e}", m.pod))?;
            if !obs.myself.open_slots.is_empty() {
                return Err(format!(
                    "{} has open slots {:?}",
                    m.pod, obs.myself.open_slots
                ));
            }
        }
        let rc = self.api().get(&c.name).await.map_err(|e| e.to_string())?;
        match condition(&rc, "Reconciling") {
            Some((s, reason, msg)) if s == "True" => Err(format!("Reconciling {reason}: {msg}")),
            _ => Ok(()),
        }
    }

    /// The conditions of every cluster, one line each (for the timeline and failures).
    pub async fn conditions(&self) -> String {
        let mut out = String::new();
        for c in &self.clusters {
            let line = match self.api().get(&c.name).await {
                Ok(rc) => rc
                    .status
                    .map(|s| {
                        s.conditions
                            .iter()
                            .map(|c| format!("{}={} {}", c.type_, c.status, c.reason))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
                Err(e) => format!("get failed: {e}"),
            };
            out.push_str(&format!("  {}: {line}\n", c.name));
        }
        out
    }

    /// Restarts the operator if a fault left it stopped.
    pub fn ensure_operator(&self) {
        if let Ok(mut op) = self.operator.lock()
            && op.is_none()
        {
            *op = Some(Operator::start(&self.ns.name));
        }
    }

    pub async fn cleanup(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut op) = self.operator.lock() {
            op.take();
        }
        self.ns.cleanup().await;
    }
}

/// Samples every member's own role once a second and counts replicas that became masters with
/// slots: a failover, whoever started it (Redis on its own, the preStop hook, the operator).
async fn count_failovers(
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    pass: String,
    failovers: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let admin = member_admin(&pass);
    // node id → was a replica at its last sample.
    let mut was_replica: BTreeMap<String, bool> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let now: Vec<SocketAddr> = addrs.lock().map(|a| a.clone()).unwrap_or_default();
        let observed =
            futures::future::join_all(now.iter().map(|a| observe_node(*a, &admin))).await;
        for obs in observed.into_iter().flatten() {
            let id = obs.myself.id.to_string();
            let replica = !obs.myself.is_master();
            let master_with_slots = obs.myself.is_master() && obs.myself.slot_count() > 0;
            if master_with_slots && was_replica.get(&id) == Some(&true) {
                failovers.fetch_add(1, Ordering::Relaxed);
            }
            was_replica.insert(id, replica);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
