//! One reconcile of one RedisCluster: the only place that performs I/O for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Api, Resource, ResourceExt};
use redis_scheduler::{CurrentMember, Placement, Role};

use super::bootstrap::{self, Seat, ShardSeats, Step};
use super::build::{self, pod::MemberPod};
use super::config;
use super::labels::{self, MANAGER, Names};
use super::members::{self, Member};
use super::redis_view::{self, NodeView, Observation};
use super::status::{self, Desired, types};
use super::{Context, Error, REQUEUE_IDLE, REQUEUE_WAIT, busy};
use crate::crd::{RedisCluster, RedisClusterStatus};
use crate::redis::client::{AdminOptions, Auth, Timeouts};
use crate::redis::command::Cmd;

/// What the reconcile found and decided, turned into status at the end.
struct Outcome {
    conditions: Vec<Desired>,
    action: Action,
    placement: Option<Placement>,
    views: BTreeMap<String, NodeView>,
}

impl Outcome {
    fn new(conditions: Vec<Desired>, action: Action) -> Self {
        Self {
            conditions,
            action,
            placement: None,
            views: BTreeMap::new(),
        }
    }
}

/// Reconciles one RedisCluster.
///
/// # Errors
/// Kubernetes API failures; the controller retries them with backoff.
pub async fn reconcile(cluster: Arc<RedisCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references garbage-collect everything; Retain PVCs are deliberately unowned.
        return Ok(Action::await_change());
    }
    let ns = cluster.namespace().ok_or(Error::MissingMetadata)?;
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingMetadata)?;
    let pods = members::members(&ctx.pods.state(), &ns, &name);
    let outcome = drive(&cluster, &ctx, &ns, &name, &pods).await?;
    write_status(&cluster, &ctx, &ns, &name, &pods, &outcome).await?;
    Ok(outcome.action)
}

/// Error policy: log and retry with a delay; the next reconcile starts from fresh observations.
pub fn error_policy(cluster: Arc<RedisCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), error = %error, category = error.category(), "reconcile error");
    Action::requeue(Duration::from_secs(5))
}

async fn drive(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    pods: &[Member],
) -> Result<Outcome, Error> {
    // 1. Input the operator must refuse: nothing is created, changed or deleted.
    if let Err(msg) = config::validate_overrides(&cluster.spec.config) {
        return Ok(invalid_spec(ctx, cluster, msg).await);
    }
    let (secret_name, secret_key) = match ensure_auth_secret(cluster, ctx, ns).await? {
        Ok(found) => found,
        Err(msg) => return Ok(invalid_spec(ctx, cluster, msg).await),
    };
    let password = match read_password(ctx, ns, &secret_name, &secret_key).await? {
        Ok(p) => p,
        Err(msg) => return Ok(invalid_spec(ctx, cluster, msg).await),
    };

    // 2. Placement over the nodes as they are now.
    let nodes = ctx.nodes.state();
    let topology = super::placement_input::topology(&nodes, cluster);
    let request = super::placement_input::request(cluster);
    let views = observe(pods, &password).await;
    let current = current_members(pods, &views);
    let placement = match redis_scheduler::solve(&topology, &request, &current) {
        Ok(p) => p,
        Err(unsat) => {
            let reason = unsat.to_string();
            publish_once(
                ctx,
                cluster,
                EventType::Warning,
                "PlacementUnsatisfiable",
                &reason,
                types::PLACEMENT_SATISFIED,
            )
            .await;
            let mut o = Outcome::new(
                vec![
                    Desired::new(
                        types::READY,
                        false,
                        "PlacementUnsatisfiable",
                        reason.clone(),
                    ),
                    Desired::new(
                        types::PROGRESSING,
                        false,
                        "PlacementUnsatisfiable",
                        "waiting for nodes or a spec change",
                    ),
                    Desired::new(
                        types::DEGRADED,
                        !pods.is_empty(),
                        "PlacementUnsatisfiable",
                        reason.clone(),
                    ),
                    Desired::new(types::PLACEMENT_SATISFIED, false, "Unsatisfiable", reason),
                ],
                Action::requeue(REQUEUE_WAIT),
            );
            o.views = views;
            return Ok(o);
        }
    };
    let placement_cond = Desired::new(
        types::PLACEMENT_SATISFIED,
        true,
        if placement.zone_loss_safe {
            "Satisfied"
        } else {
            "SatisfiedNotZoneLossSafe"
        },
        if placement.zone_loss_safe {
            "every shard's members are in distinct zones; losing any one zone leaves a majority of leaders".to_string()
        } else {
            placement.zone_loss_reason.clone()
        },
    );

    // 3. Supporting objects (idempotent server-side apply).
    let rendered = config::render(&cluster.spec.config);
    let config_hash = config::hash(&rendered);
    apply_support_objects(cluster, ctx, ns, &rendered).await?;

    // 4. Members that placement wants and that have no Pod yet.
    let created = create_missing_members(
        cluster,
        ctx,
        ns,
        name,
        pods,
        &placement,
        &secret_name,
        &secret_key,
        &config_hash,
    )
    .await?;
    if created > 0 {
        let mut o = Outcome::new(
            vec![
                Desired::new(
                    types::READY,
                    false,
                    "CreatingMembers",
                    format!("created {created} member pods"),
                ),
                Desired::new(
                    types::PROGRESSING,
                    true,
                    "CreatingMembers",
                    format!("created {created} member pods"),
                ),
                Desired::new(types::DEGRADED, false, "CreatingMembers", ""),
                placement_cond,
            ],
            busy(),
        );
        o.placement = Some(placement);
        return Ok(o);
    }

    // 5. Wait for the Pods, then join them into one Redis Cluster.
    let live: Vec<&Member> = pods
        .iter()
        .filter(|m| !m.terminating() && !m.finished())
        .collect();
    let not_ready: Vec<&str> = live
        .iter()
        .filter(|m| !m.ready())
        .map(|m| m.name())
        .collect();
    let mut outcome = if !not_ready.is_empty() {
        let msg = format!("waiting for pods to become ready: {}", not_ready.join(", "));
        Outcome::new(
            vec![
                Desired::new(types::READY, false, "CreatingMembers", msg.clone()),
                Desired::new(types::PROGRESSING, true, "CreatingMembers", msg),
                Desired::new(types::DEGRADED, false, "CreatingMembers", ""),
                placement_cond,
            ],
            busy(),
        )
    } else {
        let step = bootstrap::next_step(&shard_seats(&live, &views, &placement));
        let action = run_step(ctx, cluster, &step, &password).await;
        conditions_for(&step, placement_cond, action)
    };
    outcome.placement = Some(placement);
    outcome.views = views;
    Ok(outcome)
}

fn conditions_for(step: &Step, placement_cond: Desired, action: Action) -> Outcome {
    let (reason, msg) = match step {
        Step::Done => {
            return Outcome::new(
                vec![
                    Desired::new(
                        types::READY,
                        true,
                        "ClusterReady",
                        "all slots served, every follower in sync",
                    ),
                    Desired::new(types::PROGRESSING, false, "Idle", "nothing to do"),
                    Desired::new(types::DEGRADED, false, "Healthy", ""),
                    placement_cond,
                ],
                Action::requeue(REQUEUE_IDLE),
            );
        }
        Step::WaitMembers(m) => ("WaitingForMembers", m.clone()),
        Step::Meet(pairs) => (
            "JoiningMembers",
            format!("introducing {} member pairs (CLUSTER MEET)", pairs.len()),
        ),
        Step::WaitGossip(m) => ("JoiningMembers", m.clone()),
        Step::AddSlots(a) => (
            "AssigningSlots",
            format!("assigning slots to {} shard leaders", a.len()),
        ),
        Step::Replicate(r) => (
            "AttachingFollowers",
            format!("attaching {} followers", r.len()),
        ),
        Step::WaitSync(m) => ("WaitingForSync", m.clone()),
        Step::Blocked(m) => {
            return Outcome::new(
                vec![
                    Desired::new(types::READY, false, "Blocked", m.clone()),
                    Desired::new(types::PROGRESSING, false, "Blocked", m.clone()),
                    Desired::new(types::DEGRADED, true, "Blocked", m.clone()),
                    placement_cond,
                ],
                Action::requeue(REQUEUE_WAIT),
            );
        }
    };
    Outcome::new(
        vec![
            Desired::new(types::READY, false, reason, msg.clone()),
            Desired::new(types::PROGRESSING, true, reason, msg),
            Desired::new(types::DEGRADED, false, reason, ""),
            placement_cond,
        ],
        action,
    )
}

async fn invalid_spec(ctx: &Context, cluster: &RedisCluster, msg: String) -> Outcome {
    publish_once(
        ctx,
        cluster,
        EventType::Warning,
        "InvalidSpec",
        &msg,
        types::READY,
    )
    .await;
    Outcome::new(
        vec![
            Desired::new(types::READY, false, "InvalidSpec", msg.clone()),
            Desired::new(
                types::PROGRESSING,
                false,
                "InvalidSpec",
                "fix the spec; nothing was changed",
            ),
        ],
        Action::await_change(),
    )
}

fn admin_options(password: &str) -> AdminOptions {
    AdminOptions {
        auth: Some(Auth {
            username: None,
            password: password.to_string(),
        }),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(5),
            ..Timeouts::default()
        },
    }
}

/// Every running member's Redis view, keyed by Pod name.
async fn observe(pods: &[Member], password: &str) -> BTreeMap<String, NodeView> {
    let options = admin_options(password);
    let running: Vec<&Member> = pods
        .iter()
        .filter(|m| !m.terminating() && m.ip().is_some())
        .collect();
    let ips: Vec<_> = running.iter().filter_map(|m| m.ip()).collect();
    let results = redis_view::observe_all(&ips, &options).await;
    running
        .iter()
        .zip(results)
        .filter_map(|(m, obs)| match obs {
            Observation::Up(v) => Some((m.name().to_string(), *v)),
            Observation::Down(e) => {
                tracing::debug!(pod = m.name(), error = %e, "member not answering");
                None
            }
        })
        .collect()
}

/// Members as the scheduler sees them. The role is what Redis reports; before a shard has a
/// master with slots, its lowest-ordinal member stands for the leader it is about to become.
fn current_members(pods: &[Member], views: &BTreeMap<String, NodeView>) -> Vec<CurrentMember> {
    let live: Vec<&Member> = pods
        .iter()
        .filter(|m| !m.terminating() && !m.finished())
        .collect();
    let serving = |m: &Member| views.get(m.name()).is_some_and(NodeView::is_serving_master);
    live.iter()
        .filter_map(|m| {
            let shard_has_leader = live.iter().any(|o| o.shard == m.shard && serving(o));
            let first_in_shard = live
                .iter()
                .filter(|o| o.shard == m.shard)
                .map(|o| o.member)
                .min()
                == Some(m.member);
            let leader = serving(m) || (!shard_has_leader && first_in_shard);
            Some(CurrentMember {
                shard: u32::try_from(m.shard).ok()?,
                role: if leader { Role::Leader } else { Role::Follower },
                node: m.node()?.to_string(),
                healthy: true,
            })
        })
        .collect()
}

fn shard_seats<'a>(
    live: &[&'a Member],
    views: &'a BTreeMap<String, NodeView>,
    placement: &Placement,
) -> Vec<ShardSeats<'a>> {
    placement
        .shards
        .iter()
        .map(|sp| {
            let index = sp.index as usize;
            let mut shard_members: Vec<&&Member> =
                live.iter().filter(|m| m.shard == index).collect();
            shard_members.sort_by_key(|m| m.member);
            let leader_node = sp
                .members
                .iter()
                .find(|pm| pm.role == Role::Leader)
                .map(|pm| pm.node.as_str());
            let preferred_leader = shard_members.iter().position(|m| m.node() == leader_node);
            ShardSeats {
                index,
                seats: shard_members
                    .iter()
                    .map(|m| Seat {
                        pod: m.name(),
                        view: views.get(m.name()),
                    })
                    .collect(),
                preferred_leader,
            }
        })
        .collect()
}

async fn run_step(ctx: &Context, cluster: &RedisCluster, step: &Step, password: &str) -> Action {
    let options = admin_options(password);
    let result: Result<String, String> = match step {
        Step::Meet(pairs) => {
            let mut errors = Vec::new();
            for (on, meet) in pairs {
                let cmd = Cmd::cluster_meet(*meet, None);
                if let Err(e) = redis_view::run_ok(*on, &options, &cmd).await {
                    errors.push(format!("{on} MEET {meet}: {e}"));
                }
            }
            if errors.is_empty() {
                Ok(format!("{} CLUSTER MEETs sent", pairs.len()))
            } else {
                Err(errors.join("; "))
            }
        }
        Step::AddSlots(assignments) => {
            let mut done = Vec::new();
            let mut errors = Vec::new();
            for (addr, shard, ranges) in assignments {
                let cmd = Cmd::cluster_addslotsrange(ranges);
                match redis_view::run_ok(*addr, &options, &cmd).await {
                    Ok(()) => done.push(format!("shard {shard}: {}", fmt_ranges(ranges))),
                    Err(e) => errors.push(format!("shard {shard} ADDSLOTSRANGE on {addr}: {e}")),
                }
            }
            if !done.is_empty() {
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "SlotsAssigned",
                    &done.join("; "),
                )
                .await;
            }
            if errors.is_empty() {
                Ok("slots assigned".into())
            } else {
                Err(errors.join("; "))
            }
        }
        Step::Replicate(attach) => {
            let mut done = Vec::new();
            let mut errors = Vec::new();
            for (addr, shard, leader) in attach {
                let cmd = Cmd::cluster_replicate(leader);
                match redis_view::run_ok(*addr, &options, &cmd).await {
                    Ok(()) => done.push(format!(
                        "{addr} follows shard {shard} leader {}",
                        leader.short()
                    )),
                    Err(e) => errors.push(format!("{addr} REPLICATE {}: {e}", leader.short())),
                }
            }
            if !done.is_empty() {
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "FollowerAttached",
                    &done.join("; "),
                )
                .await;
            }
            if errors.is_empty() {
                Ok("followers attached".into())
            } else {
                Err(errors.join("; "))
            }
        }
        Step::Done
        | Step::WaitMembers(_)
        | Step::WaitGossip(_)
        | Step::WaitSync(_)
        | Step::Blocked(_) => {
            return busy();
        }
    };
    match result {
        Ok(msg) => tracing::info!(cluster = %cluster.name_any(), "{msg}"),
        // Failures are retried from a fresh observation; most are a member restarting.
        Err(msg) => tracing::warn!(cluster = %cluster.name_any(), "redis step failed: {msg}"),
    }
    busy()
}

fn fmt_ranges(ranges: &[crate::redis::ids::SlotRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

async fn ensure_auth_secret(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
) -> Result<Result<(String, String), String>, Error> {
    let auth = cluster.spec.auth.clone().unwrap_or_default();
    let key = auth
        .secret_key
        .unwrap_or_else(|| build::secret::PASSWORD_KEY.to_string());
    if let Some(name) = auth.secret_name {
        return Ok(Ok((name, key)));
    }
    let name = Names::generated_auth_secret(cluster);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if api.get_opt(&name).await?.is_none() {
        match api
            .create(
                &PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..PostParams::default()
                },
                &build::secret::build(cluster),
            )
            .await
        {
            Ok(_) => {
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "AuthSecretCreated",
                    &format!("generated password Secret {name}"),
                )
                .await
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ok((name, key)))
}

async fn read_password(
    ctx: &Context,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Result<String, String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(Err(format!("auth Secret {name} not found")));
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        });
    let Some(password) = value else {
        return Ok(Err(format!("auth Secret {name} has no key {key}")));
    };
    Ok(config::validate_password(&password).map(|()| password))
}

async fn apply_support_objects(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    rendered: &str,
) -> Result<(), Error> {
    let pp = PatchParams::apply(MANAGER).force();
    let client = ctx.client.clone();
    let cm = build::config_map::build(cluster, rendered);
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), ns)
        .patch(&Names::config_map(cluster), &pp, &Patch::Apply(&cm))
        .await?;
    let svc_api = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns);
    svc_api
        .patch(
            &Names::client_service(cluster),
            &pp,
            &Patch::Apply(&build::service::client(cluster)),
        )
        .await?;
    svc_api
        .patch(
            &Names::headless_service(cluster),
            &pp,
            &Patch::Apply(&build::service::headless(cluster)),
        )
        .await?;
    Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(client, ns)
        .patch(
            &Names::pdb(cluster),
            &pp,
            &Patch::Apply(&build::pdb::build(cluster)),
        )
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn create_missing_members(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    pods: &[Member],
    placement: &Placement,
    secret_name: &str,
    secret_key: &str,
    config_hash: &str,
) -> Result<usize, Error> {
    let live: Vec<&Member> = pods
        .iter()
        .filter(|m| !m.terminating() && !m.finished())
        .collect();
    let claims = members::claims(&ctx.pvcs.state(), ns, name);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let mut created = 0;
    for shard in &placement.shards {
        let index = shard.index as usize;
        let in_shard: Vec<&&Member> = live.iter().filter(|m| m.shard == index).collect();
        for (pos, planned) in shard.members.iter().enumerate() {
            if in_shard
                .iter()
                .any(|m| m.node() == Some(planned.node.as_str()))
            {
                continue;
            }
            // Ordinals are stable identities within the shard: reuse the lowest one not held
            // by a live Pod (the planned leader takes 0 on a fresh shard).
            let used: Vec<usize> = in_shard.iter().map(|m| m.member).collect();
            let member = if pos == 0 && !used.contains(&0) {
                0
            } else {
                (0..).find(|o| !used.contains(o)).unwrap_or(pos)
            };
            let suffix = labels::random_suffix();
            let claim = match &cluster.spec.storage {
                None => None,
                Some(storage) => {
                    // A claim of this member already provisioned on the planned node (an earlier
                    // incarnation, or a create interrupted by a crash) keeps its data: reuse it.
                    let reusable = claims.iter().find(|(n, pvc)| {
                        pvc.metadata.deletion_timestamp.is_none()
                            && build::pod::member_of(
                                pvc.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                            ) == Some((index, member))
                            && members::claim_node(pvc).is_none_or(|node| node == planned.node)
                            && !pods
                                .iter()
                                .any(|m| m.claim() == Some(n.as_str()) && !m.finished())
                    });
                    match reusable {
                        Some((n, _)) => Some(n.clone()),
                        None => {
                            let n = Names::member_pvc(name, index, member, &suffix);
                            pvc_api
                                .create(
                                    &pp,
                                    &build::pvc::build(cluster, storage, n.clone(), index, member),
                                )
                                .await?;
                            Some(n)
                        }
                    }
                }
            };
            let pod_name = Names::member_pod(name, index, member, &suffix);
            let pod = build::pod::build(
                cluster,
                &MemberPod {
                    shard: index,
                    member,
                    name: pod_name.clone(),
                    node: &planned.node,
                    pvc: claim,
                    auth_secret: secret_name,
                    auth_key: secret_key,
                    config_hash,
                },
            );
            pod_api.create(&pp, &pod).await?;
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "MemberCreated",
                &format!(
                    "shard {index} member {member}: pod {pod_name} on node {} ({})",
                    planned.node, planned.zone
                ),
            )
            .await;
            created += 1;
        }
    }
    Ok(created)
}

async fn write_status(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
    pods: &[Member],
    outcome: &Outcome,
) -> Result<(), Error> {
    let old = cluster.status.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let generation = cluster.metadata.generation;
    let zone_of = |node: &str| -> String {
        ctx.nodes
            .get(&kube::runtime::reflector::ObjectRef::new(node))
            .and_then(|n| {
                n.metadata
                    .labels
                    .as_ref()?
                    .get(&cluster.spec.zone_key)
                    .cloned()
            })
            .unwrap_or_default()
    };
    let desired_total = usize::try_from(cluster.spec.leaders).unwrap_or(0)
        * (1 + usize::try_from(cluster.spec.followers_per_leader).unwrap_or(0));
    let live: Vec<&Member> = pods
        .iter()
        .filter(|m| !m.terminating() && !m.finished())
        .collect();
    let ready = live.iter().filter(|m| m.ready()).count();
    let mut zones: Vec<String> = live
        .iter()
        .filter_map(|m| m.node())
        .map(zone_of)
        .filter(|z| !z.is_empty())
        .collect();
    zones.sort();
    zones.dedup();

    let shards = super::shard_status::shards(&live, &outcome.views, &zone_of, cluster.spec.leaders);
    let placement = super::shard_status::compact_placement(&shards);
    let status = RedisClusterStatus {
        observed_generation: generation,
        phase: Some(status::phase(&outcome.conditions)),
        conditions: status::merge_conditions(&old.conditions, &outcome.conditions, generation, now),
        ready_members: Some(format!("{ready}/{desired_total}")),
        zones: i32::try_from(zones.len()).ok(),
        placement: (!placement.is_empty()).then_some(placement),
        zone_loss_safe: outcome.placement.as_ref().map(|p| p.zone_loss_safe),
        shards,
    };
    if status::same_ignoring_time(&old, &status) && old.conditions.len() == status.conditions.len()
    {
        return Ok(());
    }
    let api: Api<RedisCluster> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": RedisCluster::api_version(&()),
        "kind": RedisCluster::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply("redis-operator/status").force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    cluster: &RedisCluster,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = KubeEvent {
        type_,
        reason: reason.to_string(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

/// Publishes a warning only when the condition it explains is not already False with the same
/// reason, so a waiting cluster does not emit an event every requeue.
async fn publish_once(
    ctx: &Context,
    cluster: &RedisCluster,
    type_: EventType,
    reason: &str,
    note: &str,
    condition: &str,
) {
    let already = cluster.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition && c.status == "False" && c.message == note)
    });
    if !already {
        publish(ctx, cluster, type_, reason, note).await;
    }
}
