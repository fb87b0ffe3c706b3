//! Running one round: the spec change its moment asks for, then its faults, each injected,
//! held and healed for real through `hack/local-cluster`, signals and the API server, with
//! every step on the timeline.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use kube::api::DeleteParams;
use serde_json::json;

use super::report::Timeline;
use super::schedule::{Fault, Kind, Moment, Role, Round, is_member_fault};
use super::world::World;
use crate::kube_support::{Member, Operator, repo};

/// What a round's faults may aim at, read before the first one lands (the API server may be
/// unreachable later in the round).
pub struct Targets {
    /// Every member of every cluster, with its cluster's index.
    pub members: Vec<(usize, Member)>,
    pub pids: HashMap<String, u32>,
    pub claims: HashMap<String, String>,
}

impl Targets {
    pub async fn read(world: &World) -> Targets {
        let (pids, claims) = world.pod_facts().await;
        let mut members: Vec<(usize, Member)> = world
            .clusters
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.members.0.iter().cloned().map(move |m| (i, m)))
            .collect();
        members.sort_by(|a, b| a.1.pod.cmp(&b.1.pod));
        Targets {
            members,
            pids,
            claims,
        }
    }

    /// The member a fault aims at: of `cluster`, with the fault's role (any role if none
    /// has it), in `zone` when given; `pick` chooses among them.
    fn member(&self, cluster: usize, f: &Fault, zone: Option<&str>) -> Option<Member> {
        let of_cluster: Vec<&Member> = self
            .members
            .iter()
            .filter(|(i, m)| *i == cluster && zone.is_none_or(|z| m.zone == z))
            .map(|(_, m)| m)
            .collect();
        let wanted = |m: &&Member| m.leader == (f.role == Role::Leader);
        let with_role: Vec<&Member> = of_cluster.iter().copied().filter(wanted).collect();
        let pool = if with_role.is_empty() {
            of_cluster
        } else {
            with_role
        };
        if pool.is_empty() {
            return None;
        }
        Some(pool[(f.pick % pool.len() as u64) as usize].clone())
    }
}

/// Applies the round's moment: the spec change that must be under way when the first fault
/// lands. Returns the cluster whose shape it changes and the new shape.
pub async fn start_moment(
    world: &mut World,
    round: &Round,
    timeline: &Timeline,
) -> Result<(), String> {
    let n = world.clusters.len();
    match round.moment {
        Moment::Healthy | Moment::MidRecovery => return Ok(()),
        Moment::MidRollout => {
            let i = (round.cluster % n as u64) as usize;
            world.clusters[i].rollouts += 1;
            let backlog = if world.clusters[i].rollouts % 2 == 1 {
                512
            } else {
                511
            };
            world
                .patch_spec(i, json!({"config": {"tcp-backlog": backlog.to_string()}}))
                .await?;
            timeline.log(format!(
                "{}: rollout started (tcp-backlog {backlog})",
                world.clusters[i].name
            ));
        }
        Moment::MidReshard => {
            // Only the 3 × 1 changes its leaders (3 ↔ 5: an odd count keeps a majority of
            // leaders outside any one zone, so a zone fault mid-reshard stays recoverable).
            let i = 0;
            let (leaders, f) = world.clusters[i].shape;
            let to = if leaders == 3 { 5 } else { 3 };
            world.patch_spec(i, json!({"leaders": to})).await?;
            world.clusters[i].shape = (to, f);
            timeline.log(format!(
                "{}: reshard started ({leaders} -> {to} leaders)",
                world.clusters[i].name
            ));
        }
    }
    tokio::time::sleep(Duration::from_secs(round.lead_secs)).await;
    Ok(())
}

/// The zone a fault hits, once resolved: a second fault stays in it.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub zone: Option<String>,
}

/// Injects `f`, holds it and heals it. `zone` confines a second fault to the first one's zone.
pub async fn run_fault(
    world: &World,
    targets: &Targets,
    cluster: u64,
    f: &Fault,
    zone: Option<&str>,
    timeline: &Timeline,
) -> Result<Resolved, String> {
    let n = world.clusters.len() as u64;
    let mut cluster = (cluster % n) as usize;
    if f.kind == Kind::DiskFull && !world.clusters[cluster].pvc {
        match world.clusters.iter().position(|c| c.pvc) {
            Some(i) => cluster = i,
            None => return skip(timeline, f, "no cluster has volumes"),
        }
    }
    let member = if is_member_fault(f.kind) {
        match targets.member(cluster, f, zone) {
            Some(m) => Some(m),
            None => return skip(timeline, f, "no member matches"),
        }
    } else {
        None
    };
    let hold = Duration::from_secs(f.hold_secs);
    let ns = world.ns.name.clone();
    match (f.kind, member) {
        (Kind::DeletePod | Kind::ForceDeletePod, Some(m)) => {
            let dp = if f.kind == Kind::ForceDeletePod {
                DeleteParams::default().grace_period(0)
            } else {
                DeleteParams::default()
            };
            let pod = current_pod(world, &m)
                .await
                .and_then(|p| p.metadata.name)
                .unwrap_or_else(|| m.pod.clone());
            timeline.log(format!("{f}: delete {pod} ({})", describe(&m)));
            match world.pods().delete(&pod, &dp).await {
                Ok(_) => {}
                // Replaced since it was looked up (a rollout or the operator raced us): the
                // seat's new Pod was the target and is gone too; nothing left to do.
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    timeline.log(format!("{f}: {pod} already gone"));
                }
                Err(e) => return Err(format!("delete {pod}: {e}")),
            }
            Ok(in_zone(&m.zone))
        }
        (Kind::KillRedis, Some(m)) => {
            let Some(pid) = pid_of(world, targets, &m).await else {
                timeline.log(format!(
                    "{f}: {} runs no redis-server now (its Pod was just replaced); nothing to kill",
                    describe(&m)
                ));
                return Ok(in_zone(&m.zone));
            };
            timeline.log(format!("{f}: SIGKILL {} (pid {pid})", describe(&m)));
            signal("KILL", pid);
            Ok(in_zone(&m.zone))
        }
        (Kind::PauseRedis, Some(m)) => {
            let Some(pid) = pid_of(world, targets, &m).await else {
                timeline.log(format!("{f}: {} runs no redis-server now (its Pod was just replaced); nothing to pause", describe(&m)));
                return Ok(in_zone(&m.zone));
            };
            timeline.log(format!("{f}: SIGSTOP {} (pid {pid})", describe(&m)));
            signal("STOP", pid);
            tokio::time::sleep(hold).await;
            signal("CONT", pid);
            timeline.log(format!("{f}: SIGCONT {}", m.pod));
            Ok(in_zone(&m.zone))
        }
        (Kind::NodeCrash | Kind::NodePartition, Some(m)) => {
            let mut args = vec!["node-down", m.node.as_str()];
            if f.kind == Kind::NodePartition {
                args.push("--partition");
            }
            timeline.log(format!("{f}: {args:?} (holds {})", describe(&m)));
            local_cluster(&args)?;
            tokio::time::sleep(hold).await;
            local_cluster(&["node-up", &m.node])?;
            timeline.log(format!("{f}: node-up {}", m.node));
            Ok(in_zone(&m.zone))
        }
        (Kind::ZoneCrash | Kind::ZonePartition, _) => {
            let z = zone.map(str::to_owned).unwrap_or_else(|| {
                world.zones[(f.pick % world.zones.len() as u64) as usize].clone()
            });
            let mut args = vec!["zone-down", z.as_str()];
            if f.kind == Kind::ZonePartition {
                args.push("--partition");
            }
            timeline.log(format!("{f}: {args:?}"));
            local_cluster(&args)?;
            tokio::time::sleep(hold).await;
            local_cluster(&["zone-up", &z])?;
            timeline.log(format!("{f}: zone-up {z}"));
            Ok(in_zone(&z))
        }
        (Kind::LinkDegrade, _) => {
            let zs = &world.zones;
            let a = (f.pick % zs.len() as u64) as usize;
            let b = (a + 1 + (f.pick2 % (zs.len() as u64 - 1)) as usize) % zs.len();
            let (za, zb) = (zs[a].as_str(), zs[b].as_str());
            let args = [
                "link-degrade",
                za,
                zb,
                "--delay",
                "200",
                "--jitter",
                "50",
                "--loss",
                "5",
            ];
            timeline.log(format!("{f}: {args:?}"));
            local_cluster(&args)?;
            tokio::time::sleep(hold).await;
            local_cluster(&["link-restore", za, zb])?;
            timeline.log(format!("{f}: link-restore {za} {zb}"));
            Ok(Resolved::default())
        }
        (Kind::OperatorKill, _) => {
            timeline.log(format!("{f}: SIGKILL the operator"));
            let old = world.operator.lock().map_err(|e| e.to_string())?.take();
            drop(old); // Operator's drop SIGKILLs and reaps it
            tokio::time::sleep(hold).await;
            let new = Operator::start(&ns);
            world
                .operator
                .lock()
                .map_err(|e| e.to_string())?
                .replace(new);
            timeline.log(format!("{f}: operator started again"));
            Ok(Resolved::default())
        }
        (Kind::OperatorPause, _) => {
            let running = || -> Result<Option<u32>, String> {
                Ok(world
                    .operator
                    .lock()
                    .map_err(|e| e.to_string())?
                    .as_ref()
                    .map(Operator::pid))
            };
            // A kill drawn just before this pause may hold the operator down: then there is
            // nothing to pause, and its absence is already the fault (seed 20261206, round 5).
            let Some(pid) = running()? else {
                timeline.log(format!(
                    "{f}: no operator running (another fault killed it): nothing to pause"
                ));
                tokio::time::sleep(hold).await;
                return Ok(Resolved::default());
            };
            timeline.log(format!("{f}: SIGSTOP the operator (pid {pid})"));
            signal("STOP", pid);
            tokio::time::sleep(hold).await;
            // A kill during the pause replaced the process: never signal a pid that may have
            // been reused.
            if running()? == Some(pid) {
                signal("CONT", pid);
                timeline.log(format!("{f}: SIGCONT the operator"));
            } else {
                timeline.log(format!("{f}: the paused operator was killed meanwhile"));
            }
            Ok(Resolved::default())
        }
        (Kind::ApiServerDown, _) => {
            timeline.log(format!("{f}: apiserver-down"));
            local_cluster(&["apiserver-down"])?;
            tokio::time::sleep(hold).await;
            local_cluster(&["apiserver-up"])?;
            timeline.log(format!("{f}: apiserver-up"));
            Ok(Resolved::default())
        }
        (Kind::DiskFull, Some(m)) => {
            let claim = targets
                .claims
                .get(&m.pod)
                .ok_or_else(|| format!("{} has no claim", m.pod))?
                .clone();
            timeline.log(format!("{f}: volume-fill {claim} of {}", describe(&m)));
            local_cluster(&["volume-fill", &ns, &claim])?;
            tokio::time::sleep(hold).await;
            local_cluster(&["volume-free", &ns, &claim])?;
            timeline.log(format!("{f}: volume-free {claim}"));
            Ok(in_zone(&m.zone))
        }
        (Kind::Drain, Some(m)) => {
            timeline.log(format!("{f}: drain {} (holds {})", m.node, describe(&m)));
            drain(&m.node, timeline);
            Ok(in_zone(&m.zone))
        }
        (Kind::UpgradeWave, _) => {
            let mut nodes: Vec<(String, String)> = crate::kube_support::node_zones(&world.client)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(n, z)| (z, n))
                .collect();
            nodes.sort();
            timeline.log(format!("{f}: draining {} nodes in turn", nodes.len()));
            for (_, node) in &nodes {
                drain(node, timeline);
            }
            Ok(Resolved::default())
        }
        (kind, None) => Err(format!("{kind:?} needs a member")),
    }
}

fn in_zone(zone: &str) -> Resolved {
    Resolved {
        zone: Some(zone.to_owned()),
    }
}

fn skip(timeline: &Timeline, f: &Fault, why: &str) -> Result<Resolved, String> {
    timeline.log(format!("{f}: skipped ({why})"));
    Ok(Resolved::default())
}

fn describe(m: &Member) -> String {
    let role = if m.leader { "leader" } else { "follower" };
    format!(
        "{} ({role} of shard {}, {} in {})",
        m.pod, m.shard, m.node, m.zone
    )
}

/// The Pod that holds `m`'s seat (shard and member) now: the same Pod, or the one a rollout
/// or a recovery put in its place since the round's targets were read. `None` when the API
/// server does not answer within 3 s (an API fault may be holding it).
async fn current_pod(world: &World, m: &Member) -> Option<k8s_openapi::api::core::v1::Pod> {
    let seat = seat_of(&m.pod);
    let list = tokio::time::timeout(
        Duration::from_secs(3),
        world.pods().list(&kube::api::ListParams::default()),
    )
    .await
    .ok()?
    .ok()?;
    list.items.into_iter().find(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.metadata.name.as_deref().map(seat_of) == Some(seat)
    })
}

/// A member Pod's name without its random suffix: `soak-pvc-s0-m1-4hqdz` → `soak-pvc-s0-m1`.
fn seat_of(pod: &str) -> &str {
    pod.rsplit_once('-').map_or(pod, |(seat, _)| seat)
}

/// The redis-server pid of `m`'s seat now, or the one read at the round's start when the API
/// server cannot tell (a signal to a process that is gone is a no-op). `None`: the seat runs
/// no redis-server now (a rollout or recovery just replaced its Pod and its container has
/// not started): signalling it is a no-op too, not a reason to stop the soak (seed 20261214
/// stopped at round 63 on that).
async fn pid_of(world: &World, targets: &Targets, m: &Member) -> Option<u32> {
    if let Some(pid) = current_pod(world, m)
        .await
        .as_ref()
        .and_then(crate::kube_support::container_pid)
    {
        return Some(pid);
    }
    targets.pids.get(&m.pod).copied()
}

/// `kill -SIG pid`; a process already gone is not an error (the fault raced a restart).
fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .output();
}

/// `hack/local-cluster ARGS`, its failure as an error.
fn local_cluster(args: &[&str]) -> Result<String, String> {
    let out = Command::new(repo().join("hack/local-cluster"))
        .args(args)
        .output()
        .map_err(|e| format!("hack/local-cluster {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "hack/local-cluster {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `kubectl drain` as a node-pool upgrade does it (evictions, so PodDisruptionBudgets apply),
/// then uncordon. A drain the budget holds up past its timeout is logged, not an error: the
/// budget doing its job is no failure of the cluster.
fn drain(node: &str, timeline: &Timeline) {
    let out = Command::new("kubectl")
        .args([
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            "--timeout=120s",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => timeline.log(format!("drained {node}")),
        Ok(o) => timeline.log(format!(
            "drain {node} did not finish: {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => timeline.log(format!("drain {node}: {e}")),
    }
    match Command::new("kubectl").args(["uncordon", node]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => timeline.log(format!(
            "uncordon {node}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => timeline.log(format!("uncordon {node}: {e}")),
    }
}

/// Runs the round's faults: the first, and the second `after` seconds after the first's
/// injection (MidRecovery: after its heal) confined to the first one's zone.
pub async fn run_faults(
    world: &World,
    targets: &Targets,
    round: &Round,
    timeline: &Timeline,
) -> Result<(), String> {
    let first = run_fault(world, targets, round.cluster, &round.first, None, timeline);
    let Some((after, second)) = &round.second else {
        return first.await.map(|_| ());
    };
    let after = Duration::from_secs(*after);
    if round.moment == Moment::MidRecovery {
        let r = first.await?;
        tokio::time::sleep(after).await;
        return run_fault(
            world,
            targets,
            round.cluster,
            second,
            r.zone.as_deref(),
            timeline,
        )
        .await
        .map(|_| ());
    }
    // Overlapping: the second lands while the first holds. Its zone is the first one's,
    // known once the first is injected: resolve it the same way without waiting.
    let zone = first_zone(world, targets, round);
    let later = async {
        tokio::time::sleep(after).await;
        run_fault(
            world,
            targets,
            round.cluster,
            second,
            zone.as_deref(),
            timeline,
        )
        .await
    };
    let (a, b) = tokio::join!(first, later);
    a?;
    b.map(|_| ())
}

/// The zone the first fault will hit, as [`run_fault`] resolves it.
fn first_zone(world: &World, targets: &Targets, round: &Round) -> Option<String> {
    let f = &round.first;
    match f.kind {
        Kind::ZoneCrash | Kind::ZonePartition => {
            Some(world.zones[(f.pick % world.zones.len() as u64) as usize].clone())
        }
        k if is_member_fault(k) => {
            let n = world.clusters.len() as u64;
            let mut cluster = (round.cluster % n) as usize;
            if k == Kind::DiskFull && !world.clusters[cluster].pvc {
                cluster = world.clusters.iter().position(|c| c.pvc)?;
            }
            targets.member(cluster, f, None).map(|m| m.zone)
        }
        _ => None,
    }
}
