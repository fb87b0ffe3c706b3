//! Input of the solver: the node topology, the current members and what is wanted.

use serde::{Deserialize, Serialize};

/// Every node the cluster may run members on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// The nodes, in any order: the solver sorts them by name so that the input order never
    /// changes the plan. When two nodes share a name the first one wins.
    pub nodes: Vec<Node>,
}

/// One Kubernetes node as the solver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// The node's name; members are identified by shard index and node name.
    pub name: String,
    /// The node's failure domain: the value of the zone label (by default
    /// `topology.kubernetes.io/zone`). `None` when the node lacks the label: such a node cannot
    /// prove which zone it is in, so it is never used under [`Spread::Required`], and under
    /// [`Spread::Preferred`] all unlabeled nodes count as one unnamed domain.
    pub zone: Option<String>,
    /// Whether new members may be scheduled here, and if not, why.
    pub status: NodeStatus,
    /// What this Redis cluster may use on the node.
    pub capacity: Capacity,
}

/// Whether a node accepts members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum NodeStatus {
    /// Ready, not cordoned, and every NoSchedule/NoExecute taint is tolerated.
    Schedulable,
    /// The Ready condition is not True.
    NotReady,
    /// `spec.unschedulable` is set (`kubectl cordon`).
    Cordoned,
    /// A NoSchedule or NoExecute taint that the members do not tolerate.
    Tainted {
        /// The taint as `key=value:Effect`.
        taint: String,
    },
}

impl NodeStatus {
    /// True when members may be placed on the node.
    pub fn is_schedulable(&self) -> bool {
        matches!(self, NodeStatus::Schedulable)
    }
}

/// Room on a node for this cluster's members.
///
/// The numbers include what this cluster's current members use there: the controller subtracts
/// the requests of every *other* pod on the node and passes the rest, so a member that stays on
/// its node keeps fitting. The `plan` command, which only sees `kubectl get nodes`, passes the
/// node's allocatable resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Pod slots.
    pub pods: u32,
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// What one member requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU in millicores; 0 means CPU does not limit placement.
    pub cpu_millis: u64,
    /// Memory in bytes; 0 means memory does not limit placement.
    pub memory_bytes: u64,
}

/// How hard the solver keeps the members of a shard in distinct zones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Spread {
    /// Members of a shard always sit in distinct zones and leaders are spread at most
    /// ⌈L / Z⌉ per zone; when that is impossible the solver says why.
    #[default]
    Required,
    /// The same placement as `Required` whenever one exists; otherwise members of a shard may
    /// share a zone (never a node), with as few shared zones as the solver can manage, and
    /// leaders are spread as evenly as the members allow.
    Preferred,
}

/// The shape of the cluster that is wanted, and the placement policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Number of shards, each with one leader (L).
    pub leaders: u32,
    /// Followers of every leader (F); a shard has F + 1 members.
    pub followers_per_leader: u32,
    /// Requests of every member.
    pub member_resources: Resources,
    /// Zone spread policy.
    pub spread: Spread,
    /// At most one member of the cluster per node (the default). When false, members of
    /// different shards may share a node as capacity allows; two members of one shard never do.
    pub one_member_per_node: bool,
}

impl Request {
    /// A request for `leaders` shards of `followers_per_leader + 1` members with the default
    /// policy: required zone spread, one member per node, no resource requests.
    pub fn new(leaders: u32, followers_per_leader: u32) -> Self {
        Self {
            leaders,
            followers_per_leader,
            member_resources: Resources::default(),
            spread: Spread::Required,
            one_member_per_node: true,
        }
    }

    /// Members per shard (F + 1).
    pub fn members_per_shard(&self) -> u64 {
        u64::from(self.followers_per_leader) + 1
    }
}

/// The role of a member as Redis reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Holds the shard's hash slots (a Redis master).
    #[serde(alias = "master")]
    Leader,
    /// Replicates the leader (a Redis replica).
    #[serde(alias = "replica", alias = "slave")]
    Follower,
}

impl Role {
    /// The lowercase word used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }
}

/// A member that exists now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentMember {
    /// Shard index, 0-based.
    pub shard: u32,
    /// Role as Redis reports it.
    pub role: Role,
    /// Node the member's pod runs on.
    pub node: String,
    /// Whether the member is up and in sync; an unhealthy member is always replaced.
    #[serde(default = "healthy_by_default")]
    pub healthy: bool,
}

fn healthy_by_default() -> bool {
    true
}
