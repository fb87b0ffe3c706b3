//! Observe: everything one reconcile decides from, read in one place. Kubernetes objects come
//! from the reflector caches; the cluster as Redis sees it comes from every member Pod that has
//! an IP (Terminating ones included: a leader being deleted still has to hand over). Nothing
//! here decides anything.

pub mod auth;
pub mod break_glass;
pub mod certs;
pub mod connects;
pub mod passwords;
pub mod placement_input;
pub mod pods;
pub mod redis;
pub mod revision;
pub mod scale_in;
pub mod storage_class;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use redis_scheduler::{Request, Topology};

use crate::controller::build::pod::member_of;
use crate::controller::context::Context;
use crate::controller::labels::NODE_ID_ANNOTATION;
use crate::controller::observe::revision::Target;
use crate::crd::{PvcRetentionPolicy, RedisCluster};
use crate::redis::ids::NodeId;
use crate::redis::model::{self, ClusterView};
use auth::Auth;
use break_glass::BreakGlass;
use pods::Member;
use redis::NodeView;

/// A member's PVC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// PVC name.
    pub name: String,
    /// Shard and member ordinal from its labels.
    pub shard: usize,
    /// Member ordinal.
    pub member: usize,
    /// The node its volume lives on (bound local volumes), if known.
    pub node: Option<String>,
    /// The Redis node id last seen running on it (annotation written by the operator).
    pub node_id: Option<NodeId>,
    /// Deletion was requested.
    pub deleting: bool,
}

/// A Kubernetes node as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// Value of the zone label ("" when missing).
    pub zone: String,
    /// Ready condition True.
    pub ready: bool,
    /// When the Ready condition last changed (its lastTransitionTime), if reported.
    pub ready_changed: Option<jiff::Timestamp>,
}

/// The spec fields the planner reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Shards wanted.
    pub leaders: usize,
    /// Followers per leader.
    pub followers: usize,
    /// Members have PVCs.
    pub storage: bool,
    /// What happens to PVCs of members that are gone.
    pub retention: PvcRetentionPolicy,
    /// How long a shard a scale-in removes stays a member once drained
    /// (`spec.scaleInGracePeriod`, [`scale_in::grace`]).
    pub scale_in_grace: jiff::SignedDuration,
}

impl Shape {
    /// Members wanted in total.
    pub fn members(&self) -> usize {
        self.leaders * (1 + self.followers)
    }
}

/// One reconcile's observation.
#[derive(Debug)]
pub struct Observed {
    /// The RedisCluster's name (for the commands messages suggest).
    pub name: String,
    /// What the spec asks for.
    pub shape: Shape,
    /// Losses the user accepted by annotation.
    pub break_glass: BreakGlass,
    /// The password Secret as it is now.
    /// The StorageClass the spec names, when it does not exist.
    pub missing_storage_class: Option<String>,
    pub auth: Auth,
    /// The spec's redis.conf overrides, as written.
    pub config: BTreeMap<String, String>,
    /// The shard each Redis identity had in the last written status: where a lost member
    /// belonged once nothing of its shard is left (its slots do not say: resharding moves
    /// them).
    pub recorded_shards: BTreeMap<NodeId, usize>,
    /// Every member Pod, Terminating and finished ones included, sorted by (shard, member).
    pub members: Vec<Member>,
    /// Every member PVC.
    pub claims: Vec<Claim>,
    /// Kubernetes nodes by name.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// The scheduler's input.
    pub topology: Topology,
    /// The scheduler's request.
    pub request: Request,
    /// The cluster as every answering member reports it, kept whole.
    pub view: ClusterView,
    /// What members should run (revision, live config, update strategy).
    pub target: Target,
    /// With `spec.tls`: the Secret's certificate and the one each member presents.
    pub certs: certs::Certs,
    /// The password rotation's inputs: the Secret's password, the operator's record, and what
    /// members accept while a rotation is under way.
    pub credentials: passwords::Credentials,
    /// When the observation was taken.
    pub now: jiff::Timestamp,
}

impl Observed {
    /// Members that still count: not Terminating, not finished.
    pub fn live(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| !m.terminating() && !m.finished())
    }

    /// What the member's Redis reported, if it answered.
    pub fn view_of(&self, m: &Member) -> Option<&NodeView> {
        let addr = redis::addr_of(m)?;
        self.view.node_at(addr)
    }

    /// The member Pod currently holding `addr` (Terminating ones included), if any.
    pub fn member_at(&self, addr: SocketAddr) -> Option<&Member> {
        self.members
            .iter()
            .filter(|m| !m.finished())
            .find(|m| redis::addr_of(m) == Some(addr))
    }

    /// The member answering as Redis node `id`: the first whose address's observation
    /// ([`Observed::view_of`]) is `id`'s. The addresses are found first (one pass over the
    /// observations), then the members scanned once: asking `view_of` of every member made this
    /// members × observations, and it is asked per owner and per identity.
    pub fn member_with_id(&self, id: &NodeId) -> Option<&Member> {
        let addrs: Vec<SocketAddr> = self
            .view
            .nodes
            .iter()
            .filter(|n| n.id() == id)
            .map(|n| n.addr)
            // view_of reads the first observation at an address.
            .filter(|a| self.view.node_at(*a).is_some_and(|n| n.id() == id))
            .collect();
        if addrs.is_empty() {
            return None;
        }
        self.members
            .iter()
            .find(|m| redis::addr_of(m).is_some_and(|a| addrs.contains(&a)))
    }

    /// Whether a node exists and is Ready.
    pub fn node_ready(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.ready)
    }

    /// Zone of a node ("" when unknown).
    pub fn zone_of(&self, node: &str) -> &str {
        self.nodes.get(node).map_or("", |n| n.zone.as_str())
    }

    /// Views keyed by Pod name (answering members only).
    pub fn views_by_pod(&self) -> BTreeMap<String, NodeView> {
        self.members
            .iter()
            .filter_map(|m| Some((m.name().to_string(), self.view_of(m)?.clone())))
            .collect()
    }
}

/// Reads everything for one cluster: the password Secret, the cached Pods, PVCs and Nodes,
/// and, once the password is known, every member as Redis sees it.
///
/// # Errors
/// Kubernetes API failures reading the password Secret.
pub async fn observe(
    cluster: &RedisCluster,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Observed, crate::controller::error::Error> {
    let auth = auth::read(cluster, ctx, ns).await?;
    let mut credentials = passwords::Credentials {
        wanted: auth.password().map(passwords::Password::new),
        state: passwords::read_state(cluster, ctx, ns).await?,
        grace: passwords::grace(cluster),
        members: BTreeMap::new(),
    };
    let auth = credentials.connect_with(auth);
    let members = pods::members(&ctx.pods.state(), ns, name);
    let claims = pods::claims(&ctx.pvcs.state(), ns, name)
        .values()
        .filter_map(|pvc| claim(pvc))
        .collect();
    let node_objs = ctx.nodes.state();
    let nodes = node_objs
        .iter()
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            let zone = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(&cluster.spec.zone_key))
                .cloned()
                .unwrap_or_default();
            let condition = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
            let info = NodeInfo {
                zone,
                ready: condition.is_some_and(|c| c.status == "True"),
                ready_changed: condition.and_then(|c| c.last_transition_time.as_ref().map(|t| t.0)),
            };
            Some((name, info))
        })
        .collect();
    let addrs: Vec<SocketAddr> = members
        .iter()
        .filter(|m| !m.finished())
        .filter_map(redis::addr_of)
        .collect();
    // Members whose connect timed out last pass get a shorter limit ([`connects`]).
    let key = format!("{ns}/{name}");
    let silent = ctx.connects.get(&key);
    let started = std::time::Instant::now();
    let limits = silent.limits(started);
    let view = async {
        match auth.password() {
            Some(_) => model::observe_limited(&addrs, &redis::admin_options(&auth), &limits).await,
            None => ClusterView::default(),
        }
    };
    // Side by side: a member that black-holes costs each its timeout once, not twice in a row.
    let accepted = async {
        match auth.password() {
            Some(_) if credentials.rotating() => {
                passwords::observe_members(&members, &redis::admin_options(&auth)).await
            }
            _ => BTreeMap::new(),
        }
    };
    let (view, certs, accepted) = tokio::join!(
        view,
        certs::observe(&members, auth.tls().map(AsRef::as_ref), &limits),
        accepted
    );
    credentials.members = accepted;
    ctx.connects
        .put(&key, silent.after(&limits, &view.unreachable, started));
    for u in &view.unreachable {
        tracing::debug!(addr = %u.addr, error = %u.error, "member not answering");
    }
    Ok(Observed {
        name: name.to_string(),
        break_glass: BreakGlass::from_annotations(cluster.annotations()),
        missing_storage_class: storage_class::missing(cluster, ctx).await,
        auth,
        config: cluster.spec.config.clone(),
        recorded_shards: recorded_shards(cluster),
        shape: Shape {
            leaders: usize::try_from(cluster.spec.leaders).unwrap_or(0),
            followers: usize::try_from(cluster.spec.followers_per_leader).unwrap_or(0),
            storage: cluster.spec.storage.is_some(),
            retention: cluster.spec.pvc_retention_policy,
            scale_in_grace: scale_in::grace(cluster),
        },
        members,
        claims,
        nodes,
        topology: crate::controller::observe::placement_input::topology(&node_objs, cluster),
        request: crate::controller::observe::placement_input::request(cluster),
        view,
        target: crate::controller::observe::revision::target(cluster),
        certs,
        credentials,
        now: jiff::Timestamp::now(),
    })
}

/// Node id → shard, from the shards of the last written status.
fn recorded_shards(cluster: &RedisCluster) -> BTreeMap<NodeId, usize> {
    let shards = cluster.status.iter().flat_map(|s| s.shards.iter());
    shards
        .flat_map(|s| {
            let index = usize::try_from(s.index).ok();
            s.leader
                .iter()
                .chain(s.followers.iter())
                .filter_map(move |m| Some((m.node_id.parse::<NodeId>().ok()?, index?)))
        })
        .collect()
}

fn claim(pvc: &PersistentVolumeClaim) -> Option<Claim> {
    let labels = pvc.metadata.labels.as_ref()?;
    let (shard, member) = member_of(labels)?;
    Some(Claim {
        name: pvc.metadata.name.clone()?,
        shard,
        member,
        node: pods::claim_node(pvc).map(str::to_string),
        node_id: pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NODE_ID_ANNOTATION))
            .and_then(|id| id.parse::<NodeId>().ok()),
        deleting: pvc.metadata.deletion_timestamp.is_some(),
    })
}
