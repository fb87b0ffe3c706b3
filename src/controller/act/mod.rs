//! Act: carries out the one step a plan chose, through the Kubernetes API or [`ClusterAdmin`]
//! (which re-checks every precondition on a fresh observation right before it sends anything),
//! publishes an Event for every change and a Warning Event for every failure, and returns what
//! happened with its typed error. Nothing here decides.

pub mod applied;
pub mod auth;
mod cached;
mod drain;
pub mod events;
pub mod executed;
mod failover;
pub mod objects;
mod passwords;
mod updates;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;

use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::labels::{MANAGER, NODE_ID_ANNOTATION, Names};
use crate::controller::observe::Observed;
use crate::controller::observe::redis::{addr_of, admin_options};
use crate::controller::observe::revision::{LiveApplied, file_config, live_in_file};
use crate::controller::plan::{Action, PlacementState, Plan};
use crate::crd::RedisCluster;
use crate::crd::conditions as types;
use crate::redis::ids::{NodeId, SlotRange};
use crate::redis::ops::forget::ForgetPolicy;
use crate::redis::ops::repair::RepairOptions;
use crate::redis::ops::{ClusterAdmin, OpError, StepOutcome};
use events::{publish, publish_new_problem, publish_once};
use executed::MemberInputs;
pub use executed::{ActError, Executed, Scope};
use executed::{failed, kube_failed};

/// Publishes what the plan found that a human must hear about once: a refusal, a placement
/// that cannot be met, and the losses only a human can accept.
async fn announce(ctx: &Context, cluster: &RedisCluster, obs: &Observed, plan: &Plan) {
    expiry(ctx, cluster, obs).await;
    if plan.refused {
        let condition = if plan.invalid_spec() {
            types::READY
        } else {
            types::PROGRESSING
        };
        publish_once(
            ctx,
            cluster,
            EventType::Warning,
            plan.reason,
            &plan.message,
            condition,
        )
        .await;
    } else if let PlacementState::Unsatisfiable(reason) = &plan.placement {
        publish_once(
            ctx,
            cluster,
            EventType::Warning,
            "PlacementUnsatisfiable",
            reason,
            types::PLACEMENT_SATISFIED,
        )
        .await;
    }
    for p in plan
        .problems
        .iter()
        .filter(|p| matches!(p.reason, "DataLoss" | "QuorumLost"))
    {
        publish_new_problem(ctx, cluster, p.reason, &p.message).await;
    }
}

/// A Warning Event for a TLS certificate about to expire, once per certificate: when the last
/// written status does not already say this one is expiring (status `tls.expiring`; the
/// metric and its alert keep reminding).
async fn expiry(ctx: &Context, cluster: &RedisCluster, obs: &Observed) {
    let Some(note) = crate::controller::plan::certs::expiring(obs) else {
        return;
    };
    let announced = cluster
        .status
        .as_ref()
        .and_then(|s| s.tls.as_ref())
        .is_some_and(|t| {
            t.expiring
                && obs
                    .certs
                    .secret
                    .as_ref()
                    .is_some_and(|c| c.fingerprint == t.fingerprint)
        });
    if !announced {
        publish(
            ctx,
            cluster,
            EventType::Warning,
            "CertificateExpiring",
            &note,
        )
        .await;
    }
}

/// Carries out `plan`: its announcements, the support objects when it applies them, and its
/// step. Every failure is a Warning Event and comes back as [`Executed::Failed`].
///
/// # Errors
/// Only when the namespace is being deleted (nothing can be created in it any more).
pub async fn act(
    cluster: &RedisCluster,
    ctx: &Context,
    obs: &Observed,
    plan: &Plan,
) -> Result<Executed, Error> {
    announce(ctx, cluster, obs, plan).await;
    let ns = cluster.metadata.namespace.as_deref().unwrap_or_default();
    let executed = if plan.refused || matches!(plan.placement, PlacementState::Unsatisfiable(_)) {
        Executed::Nothing
    } else {
        let admin = ClusterAdmin::new(
            obs.members
                .iter()
                .filter(|m| !m.finished())
                .filter_map(addr_of),
            admin_options(&obs.auth),
        )
        .with_connect_limits(crate::controller::observe::connects::for_step(
            &obs.view.unreachable,
        ));
        // Members run with the operator's record of the password, never straight from the
        // user's Secret: one started mid-rotation must run with a password all accept.
        let state_secret = Names::auth_state_secret(cluster);
        // redis.conf holds only live values Redis accepted (revision::file_config); a member
        // created now starts with those and records exactly them.
        let file = file_config(&cluster.spec.config, &obs.target, obs.live());
        let live_config = LiveApplied {
            restarts: 0,
            config: live_in_file(&file, &obs.target),
        }
        .to_annotation();
        let scope = Scope {
            cluster,
            ctx,
            ns,
            name: &obs.name,
            admin: &admin,
            inputs: MemberInputs {
                secret_name: &state_secret,
                secret_key: crate::controller::build::secret::PASSWORD_KEY,
                revision: &obs.target.revision,
                live_config: &live_config,
            },
        };
        let members = obs.live().count();
        match support(
            &scope,
            plan,
            &crate::controller::config::render(&file),
            members,
        )
        .await
        {
            Some(failure) => failure,
            None => step(&scope, obs, &plan.action).await,
        }
    };
    report(ctx, cluster, &obs.name, &executed).await;
    match &executed {
        Executed::Failed {
            error: Some(ActError::Kube(e)),
            ..
        } if is_namespace_terminating(e) => Err(Error::NamespaceTerminating),
        _ => Ok(executed),
    }
}

/// Applies the support objects when the plan says so; the failure, if any.
async fn support(
    scope: &Scope<'_>,
    plan: &Plan,
    rendered: &str,
    members: usize,
) -> Option<Executed> {
    if !plan.applies_support_objects() {
        return None;
    }
    match objects::apply_support_objects(scope.cluster, scope.ctx, scope.ns, rendered, members)
        .await
    {
        Ok(()) => None,
        Err(objects::ApplyError::Kube(e)) => Some(kube_failed(
            "ApplyFailed",
            "applying the ConfigMap, Services, PDB and NetworkPolicy",
            e,
        )),
        // Someone else's object: nothing to retry soon, a human must rename or remove it.
        Err(objects::ApplyError::NameConflict(message)) => Some(Executed::Failed {
            reason: "NameConflict",
            message,
            transient: false,
            retry_after: std::time::Duration::ZERO,
            error: None,
        }),
    }
}

/// Logs what happened and publishes a Warning Event for a failure.
async fn report(ctx: &Context, cluster: &RedisCluster, name: &str, executed: &Executed) {
    match executed {
        Executed::Applied(msg) | Executed::Resharded { message: msg, .. } => {
            tracing::info!(cluster = %name, "{msg}");
        }
        Executed::Failed {
            reason, message, ..
        } => {
            tracing::warn!(cluster = %name, reason, "step failed: {message}");
            publish(ctx, cluster, EventType::Warning, reason, message).await;
        }
        Executed::Nothing => {}
    }
}

fn is_namespace_terminating(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => {
            status.code == 403
                && status
                    .details
                    .as_ref()
                    .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
        }
        _ => false,
    }
}

/// Executes one action.
async fn step(scope: &Scope<'_>, obs: &Observed, action: &Action) -> Executed {
    let ctx = scope.ctx;
    match action {
        Action::Wait => Executed::Nothing,
        Action::CreateAuthSecret => auth::create(scope.cluster, ctx, scope.ns)
            .await
            .unwrap_or_else(|e| kube_failed("CreateFailed", "creating the password Secret", e)),
        Action::CreateAuthState(password) => passwords::create_state(scope, password).await,
        Action::SetPasswords(changes) => {
            let why = "members accept the passwords a rotation needs (ACL SETUSER default)";
            passwords::set_passwords(scope, changes, why).await
        }
        Action::SetMasterauth { members, password } => {
            let why = "replicas authenticate to their leaders with the new password (masterauth)";
            passwords::set_masterauth(scope, members, password, why).await
        }
        Action::RecordRotation {
            password,
            previous,
            until,
        } => passwords::record_rotation(scope, password, previous, *until).await,
        Action::ForgetPreviousPassword => passwords::forget_previous(scope).await,
        Action::CreateMembers(news) => objects::create_members(scope, news)
            .await
            .unwrap_or_else(|(what, e)| kube_failed("CreateFailed", &what, e)),
        Action::DeletePods(pods) => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), scope.ns);
            delete_all(scope, &api, pods, "MemberRemoved", "pod").await
        }
        Action::Restart(pods) => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), scope.ns);
            delete_all(scope, &api, pods, "MemberRestarted", "pod").await
        }
        Action::ApplyConfig { members, config } => {
            updates::apply_config(scope, members, config).await
        }
        Action::ReloadTls {
            members,
            fingerprint,
        } => updates::reload_tls(scope, members, fingerprint).await,
        Action::ResumeAof(members) => updates::resume_aof(scope, members).await,
        Action::DeleteClaims(claims) => {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), scope.ns);
            delete_all(scope, &api, claims, "VolumeDeleted", "PVC").await
        }
        Action::RecordIdentities(records) => record_identities(scope, records).await,
        Action::MarkDrained { pods, at, until } => drain::mark(scope, obs, pods, *at, *until).await,
        Action::ClearDrained(pods) => drain::clear(scope, pods).await,
        Action::Failover {
            shard,
            to,
            kind,
            reason,
        } => failover::failover(scope, &obs.view, *shard, to, *kind, reason).await,
        Action::StalledElections(promotions) => {
            failover::stalled_elections(scope, &obs.view, promotions).await
        }
        Action::Forget(ids) => forget(scope, ids, ForgetPolicy::NoSlots).await,
        Action::ReleaseSlots(ids) => {
            forget(scope, ids, ForgetPolicy::ReleaseSlotsOfFailedNode).await
        }
        Action::Meet(pairs) => match scope.admin.meet_pairs(pairs).await {
            Ok(StepOutcome::Applied) => {
                Executed::Applied("introduced members to each other (CLUSTER MEET)".into())
            }
            Ok(StepOutcome::AlreadyDone) => Executed::Nothing,
            Err(e) => failed("MeetFailed", format!("CLUSTER MEET: {e}"), e),
        },
        Action::AddSlots(assignments) => add_slots(scope, assignments).await,
        Action::Replicate(attach) => replicate(scope, attach).await,
        Action::Reshard {
            moves,
            remaining,
            to_leaders,
        } => updates::reshard(scope, moves, *remaining, *to_leaders).await,
        Action::FixOpenSlots => match scope.admin.fix_open_slots(&RepairOptions::default()).await {
            Ok(done) if done.is_empty() => Executed::Nothing,
            Ok(done) => {
                let note = format!("{} repair step(s): {done:?}", done.len());
                publish(
                    ctx,
                    scope.cluster,
                    EventType::Normal,
                    "SlotsRepaired",
                    &note,
                )
                .await;
                Executed::Applied(note)
            }
            Err(e) => failed("RepairFailed", format!("closing open slots: {e}"), e),
        },
    }
}

/// Records each member's identity on its claim (a claim already gone is fine).
async fn record_identities(scope: &Scope<'_>, records: &[(String, NodeId)]) -> Executed {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(scope.ctx.client.clone(), scope.ns);
    for (claim, id) in records {
        let patch =
            serde_json::json!({"metadata": {"annotations": {NODE_ID_ANNOTATION: id.as_str()}}});
        match api
            .patch(claim, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return kube_failed("RecordFailed", &format!("recording {id} on PVC {claim}"), e);
            }
        }
    }
    Executed::Nothing
}

/// Deletes each named object (already gone is fine), with an Event per deletion.
pub(super) async fn delete_all<K>(
    scope: &Scope<'_>,
    api: &Api<K>,
    objects: &[(String, String)],
    reason: &str,
    kind: &str,
) -> Executed
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for (name, why) in objects {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return kube_failed("DeleteFailed", &format!("deleting {kind} {name}"), e),
        }
        let note = format!("{kind} {name}: {why}");
        publish(scope.ctx, scope.cluster, EventType::Normal, reason, &note).await;
    }
    Executed::Applied(format!("deleted {} {kind}(s)", objects.len()))
}

async fn forget(scope: &Scope<'_>, ids: &[(NodeId, String)], policy: ForgetPolicy) -> Executed {
    let (reason, severity) = match policy {
        ForgetPolicy::NoSlots => ("NodeForgotten", EventType::Normal),
        ForgetPolicy::ReleaseSlotsOfFailedNode => ("SlotsReleased", EventType::Warning),
    };
    let wanted: Vec<NodeId> = ids.iter().map(|(id, _)| id.clone()).collect();
    let forgotten = match scope.admin.forget_all_everywhere(&wanted, policy).await {
        Ok(forgotten) => forgotten,
        Err(e) => {
            let names: Vec<&str> = wanted.iter().map(NodeId::short).collect();
            return failed(
                "ForgetFailed",
                format!("forgetting {}: {e}", names.join(", ")),
                e,
            );
        }
    };
    let mut done = Vec::new();
    for (id, why) in ids.iter().filter(|(id, _)| forgotten.contains(id)) {
        publish(
            scope.ctx,
            scope.cluster,
            severity,
            reason,
            &format!("forgot {} on every member: {why}", id.short()),
        )
        .await;
        done.push(id.short().to_string());
    }
    if done.is_empty() {
        Executed::Nothing
    } else {
        Executed::Applied(format!("forgot {}", done.join(", ")))
    }
}

/// Per-member results of a step applied to several members.
#[derive(Default)]
struct Outcomes {
    done: Vec<String>,
    errors: Vec<String>,
    first: Option<OpError>,
}

impl Outcomes {
    fn record(&mut self, result: Result<StepOutcome, OpError>, done: String, what: String) {
        match result {
            Ok(StepOutcome::Applied) => self.done.push(done),
            Ok(StepOutcome::AlreadyDone) => {}
            Err(e) => {
                self.errors.push(format!("{what}: {e}"));
                // Transient only if every error is; the first one is kept typed.
                let transient =
                    e.is_transient() && self.first.as_ref().is_none_or(OpError::is_transient);
                if self.first.is_none() || !transient {
                    self.first = Some(e);
                }
            }
        }
    }

    /// The Event for what was done, then the outcome.
    async fn finish(
        self,
        scope: &Scope<'_>,
        done_reason: &str,
        failed_reason: &'static str,
    ) -> Executed {
        if !self.done.is_empty() {
            let note = self.done.join("; ");
            publish(
                scope.ctx,
                scope.cluster,
                EventType::Normal,
                done_reason,
                &note,
            )
            .await;
        }
        match self.first {
            Some(e) => failed(failed_reason, self.errors.join("; "), e),
            None if self.done.is_empty() => Executed::Nothing,
            None => Executed::Applied(self.done.join("; ")),
        }
    }
}

async fn add_slots(
    scope: &Scope<'_>,
    assignments: &[(std::net::SocketAddr, usize, Vec<SlotRange>)],
) -> Executed {
    let mut out = Outcomes::default();
    for (addr, shard, ranges) in assignments {
        let list: Vec<String> = ranges.iter().map(ToString::to_string).collect();
        out.record(
            scope.admin.add_slot_ranges(*addr, ranges).await,
            format!("shard {shard} ({addr}): {}", list.join(",")),
            format!("shard {shard} slots on {addr}"),
        );
    }
    out.finish(scope, "SlotsAssigned", "AssignSlotsFailed")
        .await
}

async fn replicate(
    scope: &Scope<'_>,
    attach: &[(std::net::SocketAddr, usize, NodeId)],
) -> Executed {
    let mut out = Outcomes::default();
    for (addr, shard, leader) in attach {
        out.record(
            scope.admin.replicate(*addr, leader).await,
            format!("{addr} follows shard {shard} leader {}", leader.short()),
            format!("{addr} to follow {}", leader.short()),
        );
    }
    out.finish(scope, "FollowerAttached", "AttachFailed").await
}
