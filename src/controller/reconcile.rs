//! One reconcile of one RedisCluster: the only place that performs I/O for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use redis_scheduler::{CurrentMember, Placement, Role};

use super::auth::{ensure_auth_secret, read_password};
use super::bootstrap::{self, Seat, ShardSeats, Step};
use super::config;
use super::events::publish_once;
use super::members::{self, Member};
use super::objects::{apply_support_objects, create_missing_members};
use super::redis_view::{self, NodeView};
use super::status::{Desired, types};
use super::status_patch::write_status;
use super::steps;
use super::{Context, Error, REQUEUE_IDLE, REQUEUE_REDIS, REQUEUE_WAIT, busy};
use crate::crd::RedisCluster;
use crate::redis::ops::ClusterAdmin;

/// What the reconcile found and decided, turned into status at the end.
pub struct Outcome {
    /// Conditions to merge into status.
    pub conditions: Vec<Desired>,
    /// When to look again.
    pub action: Action,
    /// The placement this pass worked towards, if one exists.
    pub placement: Option<Placement>,
    /// What each answering member reported, by Pod name.
    pub views: BTreeMap<String, NodeView>,
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
    let outcome = match drive(&cluster, &ctx, &ns, &name, &pods).await {
        Err(e) if e.is_namespace_terminating() => {
            tracing::debug!(cluster = %name, "namespace is being deleted; nothing to do");
            return Ok(Action::await_change());
        }
        other => other?,
    };
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
    let options = redis_view::admin_options(&password);
    let views = redis_view::observe(pods, &options).await;
    let live_views: Vec<(usize, Option<&NodeView>)> = pods
        .iter()
        .filter(|m| !m.terminating() && !m.finished())
        .map(|m| (m.shard, views.get(m.name())))
        .collect();
    let leaders = usize::try_from(cluster.spec.leaders).unwrap_or(0);
    if let Some(msg) = super::resize::unsupported_resize(leaders, &live_views) {
        publish_once(
            ctx,
            cluster,
            EventType::Warning,
            "ResizeNotSupported",
            &msg,
            types::READY,
        )
        .await;
        let mut o = Outcome::new(
            vec![
                Desired::new(types::READY, false, "ResizeNotSupported", msg.clone()),
                Desired::new(
                    types::PROGRESSING,
                    false,
                    "ResizeNotSupported",
                    "nothing was created or removed; the cluster keeps serving as before",
                ),
                Desired::new(types::DEGRADED, false, "ResizeNotSupported", ""),
            ],
            Action::requeue(REQUEUE_WAIT),
        );
        o.views = views;
        return Ok(o);
    }
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
    // Forming the cluster needs Redis to answer, not the Pod's readiness probe to have passed;
    // Ready=True needs both (clients find members through the Services' ready endpoints).
    let step = bootstrap::next_step(&shard_seats(&live, &views, &placement));
    let admin = ClusterAdmin::new(live.iter().filter_map(|m| redis_view::addr_of(m)), options);
    steps::execute(ctx, cluster, &admin, &step).await;
    let not_ready: Vec<&str> = live
        .iter()
        .filter(|m| !m.ready())
        .map(|m| m.name())
        .collect();
    let mut outcome = if step == Step::Done && !not_ready.is_empty() {
        let msg = format!(
            "cluster formed; waiting for pods to pass readiness: {}",
            not_ready.join(", ")
        );
        Outcome::new(
            vec![
                Desired::new(types::READY, false, "WaitingForPods", msg.clone()),
                Desired::new(types::PROGRESSING, true, "WaitingForPods", msg),
                Desired::new(types::DEGRADED, false, "WaitingForPods", ""),
                placement_cond,
            ],
            busy(),
        )
    } else {
        conditions_for(&step, placement_cond)
    };
    outcome.placement = Some(placement);
    outcome.views = views;
    Ok(outcome)
}

fn conditions_for(step: &Step, placement_cond: Desired) -> Outcome {
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
    // Redis-side progress (a server starting to listen, gossip, a slot map settling, a
    // follower syncing) wakes no watch: look again soon.
    Outcome::new(
        vec![
            Desired::new(types::READY, false, reason, msg.clone()),
            Desired::new(types::PROGRESSING, true, reason, msg),
            Desired::new(types::DEGRADED, false, reason, ""),
            placement_cond,
        ],
        Action::requeue(REQUEUE_REDIS),
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
