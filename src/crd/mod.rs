//! The `RedisCluster` custom resource (`redis.redis-operator.dev/v1alpha1`).
//!
//! `crds/` is generated from these types by `cargo run --bin crdgen`; never edit it by hand.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub mod backup;
pub mod schedule;
pub use backup::{RedisClusterBackup, RestoreFrom, RestoreStatus};
pub use schedule::RedisClusterBackupSchedule;

/// API group of every resource this operator defines.
pub const GROUP: &str = "redis.redis-operator.dev";
/// The image used when `spec.image` is not set.
pub const DEFAULT_IMAGE: &str = "redis:7.2";
/// The node label used as topology domain when `spec.zoneKey` is not set.
pub const DEFAULT_ZONE_KEY: &str = "topology.kubernetes.io/zone";

/// A sharded Redis Cluster (leaders with followers) spread across topology zones.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "redis.redis-operator.dev",
    version = "v1alpha1",
    kind = "RedisCluster",
    plural = "redisclusters",
    shortname = "rdc",
    category = "redis",
    namespaced,
    status = "RedisClusterStatus",
    derive = "PartialEq",
    doc = "A sharded Redis Cluster (leaders with followers) whose shards never share a zone",
    printcolumn(name = "Leaders", type_ = "integer", json_path = ".spec.leaders"),
    printcolumn(name = "Followers", type_ = "integer", json_path = ".spec.followersPerLeader", description = "followers per leader"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.readyMembers", description = "ready members / desired members"),
    printcolumn(name = "Updated", type_ = "string", json_path = ".status.updatedMembers", priority = 1, description = "members running the current revision / desired members"),
    printcolumn(name = "Reshard", type_ = "string", json_path = ".status.reshard.progress", priority = 1, description = "slots moved / slots to move of the current or last reshard"),
    printcolumn(name = "Zones", type_ = "integer", json_path = ".status.zones", description = "zones holding members"),
    printcolumn(name = "Placement-OK", type_ = "string", json_path = ".status.conditions[?(@.type==\"PlacementSatisfied\")].status"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Placement", type_ = "string", json_path = ".status.placement", priority = 1, description = "per shard: leader zone / follower zones"),
    validation = Rule::new("!has(oldSelf.spec) || has(self.spec.storage) == has(oldSelf.spec.storage)").message("spec.storage cannot be added or removed after creation"),
    // Every derived name must fit: Pods `<name>-s499-m5-xxxxx` (a hostname, 63), the headless
    // Service `<name>-headless` (63), label values (63).
    validation = Rule::new("!has(oldSelf.spec) || has(self.spec.tls) == has(oldSelf.spec.tls)").message("spec.tls cannot be added or removed after creation: the cluster bus is TLS on every member or on none, so a rolling switch would split the cluster; make a new cluster and move the data"),
    validation = Rule::new("!has(oldSelf.spec) || has(self.spec.restoreFrom) == has(oldSelf.spec.restoreFrom) && (!has(self.spec.restoreFrom) || self.spec.restoreFrom == oldSelf.spec.restoreFrom)").message("spec.restoreFrom is set when the cluster is created and cannot change"),
    validation = Rule::new("self.metadata.name.size() <= 49").message("metadata.name must be at most 49 characters: the Pods, Services and labels derived from it must fit in 63")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterSpec {
    /// Number of shards, each led by one Redis master owning an even share of the 16384 slots.
    /// At least 3, so that the cluster keeps a majority of leaders when one fails.
    #[x_kube(validation = Rule::new("self >= 3").message("leaders must be at least 3 (Redis Cluster needs a majority of masters to fail over)"))]
    #[x_kube(validation = Rule::new("self <= 500").message("leaders must be at most 500"))]
    pub leaders: i32,

    /// Followers (Redis replicas) per leader. Each shard's members run in distinct zones.
    #[serde(default = "default_followers")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 5").message("followersPerLeader must be between 0 and 5"))]
    pub followers_per_leader: i32,

    /// Container image running redis-server (Redis 7).
    #[serde(default = "default_image")]
    #[x_kube(validation = Rule::new("self != ''").message("image must not be empty"))]
    #[x_kube(validation = Rule::new(r"!self.matches('\\s')").message("image must not contain whitespace"))]
    pub image: String,

    /// Compute resources of every Redis container. Quantities must be well-formed, and no
    /// request may exceed its limit (the Pods would be refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    #[x_kube(validation = Rule::new("(!has(self.requests) || self.requests.all(k, isQuantity(string(self.requests[k])))) && (!has(self.limits) || self.limits.all(k, isQuantity(string(self.limits[k]))))").message("resources: every request and limit must be a quantity, e.g. 100m or 64Mi"))]
    #[x_kube(validation = Rule::new("!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || !isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) || quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)").message("resources: a request must not exceed its limit"))]
    pub resources: Option<ResourceRequirements>,

    /// Persistent storage for data and nodes.conf, one volume per member. When unset, members use
    /// an emptyDir: a restarted member loses its data and identity (suitable for caches only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// What happens to the members' PersistentVolumeClaims when the RedisCluster is deleted.
    /// Default `Retain`: data outlives an accidental deletion; delete the PVCs by hand (they carry
    /// the cluster's labels) once sure.
    #[serde(default)]
    pub pvc_retention_policy: PvcRetentionPolicy,

    /// redis.conf overrides, key to value (e.g. `maxmemory: 1gb`). Keys are lowercase directive
    /// names (`^[a-z][a-z0-9-]*$`), refused at admission otherwise; values hold no control
    /// characters and balanced quotes. Keys the operator owns (cluster-*, port, dir,
    /// requirepass, ...) are refused with a `Ready=False InvalidSpec` condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "config_schema")]
    // Each message names the first offending key: a list (filter + join) costs more than the
    // API server allows for a schema.
    #[x_kube(validation = Rule::new(r#"self.all(k, k.matches('^[a-z][a-z0-9-]*$'))"#).message(Message::Expression(r#"'spec.config key "' + self.filter(k, !k.matches('^[a-z][a-z0-9-]*$'))[0] + '" is not a lowercase redis.conf directive name (^[a-z][a-z0-9-]*$)'"#.into())))]
    #[x_kube(validation = Rule::new(r#"self.all(k, !self[k].matches('[\\x00-\\x1f\\x7f]'))"#).message(Message::Expression(r#"'spec.config value of "' + self.filter(k, self[k].matches('[\\x00-\\x1f\\x7f]'))[0] + '" holds a control character (NUL, CR, LF, ...)'"#.into())))]
    #[x_kube(validation = Rule::new(r#"self.all(k, self[k].split('"').size() % 2 == 1 && self[k].split("'").size() % 2 == 1)"#).message(Message::Expression(r#"'spec.config value of "' + self.filter(k, !(self[k].split('"').size() % 2 == 1 && self[k].split("'").size() % 2 == 1))[0] + '" has unbalanced quotes'"#.into())))]
    pub config: BTreeMap<String, String>,

    /// Node label whose value is the topology domain (zone or rack) members spread over.
    #[serde(default = "default_zone_key")]
    #[x_kube(validation = Rule::new("self != ''").message("zoneKey must not be empty"))]
    #[schemars(length(max = 317))]
    #[x_kube(validation = Rule::new("!format.qualifiedName().validate(self).hasValue()").message("zoneKey must be a node label key (a qualified name such as topology.kubernetes.io/zone)"))]
    pub zone_key: String,

    /// `Required`: a shard's members never share a zone, and nothing is created when that is
    /// impossible. `Preferred`: spread as far as the zones allow.
    #[serde(default)]
    pub zone_spread: ZoneSpread,

    /// Password authentication (always on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Settings copied onto every member Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,

    /// How running members pick up a changed image, restart-requiring config, resources or pod
    /// settings. Config keys Redis accepts at runtime are always applied live (`CONFIG SET`),
    /// without a restart, whatever the strategy.
    #[serde(default, skip_serializing_if = "UpdateStrategy::is_default")]
    pub update_strategy: UpdateStrategy,

    /// How long the shards a scale-in removes stay cluster members once their last slot moved
    /// away, answering clients with `MOVED` so that they refresh their slot maps before the
    /// Pods go (a Go duration, at most `1h`; `0s`: removed at once; default `30s`, Lettuce's
    /// back-off between two adaptive topology refreshes). It runs from the moment recorded on
    /// the shard's Pods (`redis.redis-operator.dev/drained-at`): an operator restart neither
    /// restarts nor skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) <= duration('1h')").message("scaleInGracePeriod must be a duration of at most 1h, such as 30s or 2m (0s: no grace)"))]
    pub scale_in_grace_period: Option<String>,

    /// The NetworkPolicy the operator keeps for the members: the cluster bus only from the
    /// cluster's own members; the client port from the members (replication), the operator and
    /// `clients`. Enforcement needs a CNI that implements NetworkPolicy.
    #[serde(default, skip_serializing_if = "NetworkPolicySpec::is_default")]
    pub network_policy: NetworkPolicySpec,

    /// TLS for clients, replication and the cluster bus, from a Secret in the cert-manager
    /// shape (`tls.crt`, `tls.key`, `ca.crt`). Set it when the cluster is created: adding or
    /// removing `tls` later is refused, by design. The cluster bus is TLS on every member or
    /// plaintext on every member (`tls-cluster`): half-way through a rolling switch the two
    /// halves could not gossip, vote or fail over. Make a new cluster and move the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Fill the new cluster from a backup: once every slot is served, every key of the backup
    /// is written to the shard owning its slot here, whatever the number of shards. Only into
    /// an empty cluster; set when the cluster is created. Progress: `status.restore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreFrom>,
}

/// TLS settings of the members. With TLS, port 6379 speaks TLS only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A Secret in the cluster's namespace with `tls.crt` (every member's certificate chain,
    /// also presented as client certificate for replication, the cluster bus and the
    /// operator), `tls.key` and `ca.crt` (the CA members and the operator trust). The name is
    /// immutable; its content may be renewed in place (cert-manager does): members reload the
    /// new files without a restart once they show up in their mounts (the operator compares
    /// the certificate each member presents with the Secret's; a change of `ca.crt` alone is
    /// not seen). To change CAs, first renew from the old CA with both CAs in `ca.crt`, then
    /// switch to the new CA's certificate (docs/configuration.md, TLS).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("!format.dns1123Subdomain().validate(self).hasValue()").message("tls.secretName must be a Secret name (a lowercase DNS subdomain)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tls.secretName is immutable (renew the certificates in the same Secret: members reload them without a restart)"))]
    pub secret_name: String,
    /// Require a certificate signed by `ca.crt`'s CA from every client, peers included
    /// (`tls-auth-clients yes`). Default false: any client that trusts the CA may connect, and
    /// authenticates with the password only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_auth: bool,
    /// Also serve plaintext on port 6380, for clients that cannot speak TLS. Default false:
    /// TLS only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plaintext_port: bool,
    /// A DNS name every member's certificate carries (e.g. `<cluster>-headless.<namespace>.svc`,
    /// or a name under a wildcard SAN); the operator checks member certificates against it.
    /// Unset: each member's certificate must carry its pod IP as an IP SAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("!format.dns1123Subdomain().validate(self).hasValue()").message("tls.serverName must be a concrete lowercase DNS name (no wildcard)"))]
    pub server_name: Option<String>,
}

/// Who may reach the members.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Whether the operator keeps a NetworkPolicy for the members (default true). When turned
    /// off, the operator deletes the one it made.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Who may connect to the client port besides the members and the operator. Unset: every
    /// Pod in the cluster's namespace. An empty list: nobody else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<NetworkPolicyPeer>>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            clients: None,
        }
    }
}

impl NetworkPolicySpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn enabled() -> bool {
    true
}

/// How outdated members are replaced.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    /// `RollingUpdate` (default): one shard at a time, followers first, then a graceful
    /// failover to an updated in-sync follower before the old leader restarts. `OnDelete`:
    /// members are replaced only when their Pod is deleted (by a user or a drain).
    #[serde(default, rename = "type")]
    pub type_: UpdateStrategyType,
    /// Stops the rolling update where it is (members already updated stay updated); recovery
    /// still runs. Unset it to resume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Members created beside a shard before its outdated member retires (`1`, the default):
    /// the replacement starts on another node, in a zone the shard's spread allows, and
    /// full-syncs; only then does the old member leave, its volume deleted with it (its data
    /// lives on in the replacement). The shard never runs below `followersPerLeader` followers
    /// in sync, and a shard without followers hands over gracefully instead of restarting.
    /// A shard with no room for one more member rolls as with `0`, and status says so. `0`:
    /// outdated members restart in place on their volumes (a partial resync when their data
    /// survives) and their shard runs one follower short meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1").message("updateStrategy.maxSurge must be 0 or 1"))]
    pub max_surge: Option<i32>,
}

impl UpdateStrategy {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether outdated members are replaced by a surge member (`maxSurge`, 1 by default).
    pub fn surge(&self) -> bool {
        self.max_surge.unwrap_or(1) > 0
    }
}

/// Kinds of update strategy.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum UpdateStrategyType {
    /// The operator restarts outdated members itself, safely ordered.
    #[default]
    RollingUpdate,
    /// Outdated members are replaced only when their Pod is deleted.
    OnDelete,
}

/// Persistent volume settings of each member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName)").message("storage.storageClassName cannot be added or removed after creation"))]
pub struct StorageSpec {
    /// Size of each member's volume, e.g. `1Gi`: a quantity greater than zero. Immutable
    /// (resizing is not supported yet).
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.size is immutable"))]
    #[x_kube(validation = Rule::new("isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))").message("storage.size must be a quantity greater than zero, e.g. 1Gi"))]
    pub size: Quantity,
    /// StorageClass of the volumes; the cluster default when unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.storageClassName is immutable"))]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == '' || !format.dns1123Subdomain().validate(self).hasValue()").message("storage.storageClassName must be a StorageClass name (a lowercase DNS subdomain)"))]
    pub storage_class_name: Option<String>,
}

/// What to do with member PVCs when the RedisCluster is deleted.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum PvcRetentionPolicy {
    /// Keep the PVCs (default).
    #[default]
    Retain,
    /// Delete the PVCs with the cluster.
    Delete,
}

/// How strictly shard members are spread over zones.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum ZoneSpread {
    /// Members of a shard never share a zone (default).
    #[default]
    Required,
    /// Spread when possible, share zones when not.
    Preferred,
}

/// Where the Redis password comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Name of an existing Secret in the cluster's namespace holding the password. When unset,
    /// the operator generates a Secret named `<cluster>-auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("!format.dns1123Subdomain().validate(self).hasValue()").message("auth.secretName must be a Secret name (a lowercase DNS subdomain)"))]
    pub secret_name: Option<String>,
    /// Key of the password in that Secret (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("auth.secretKey must be a Secret key ([-._a-zA-Z0-9]+)"))]
    pub secret_key: Option<String>,
    /// How long the previous password keeps working after the Secret's password changed and
    /// every member accepts the new one, so that applications can roll to it (a Go duration,
    /// at least `1m`; default `10m`). The rotation is live: each member accepts the new
    /// password alongside the old (`ACL SETUSER default`), replicas switch `masterauth`, the
    /// operator switches, and the old password is removed when this period is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1m')").message("auth.rotationGracePeriod must be a duration of at least 1m, such as 10m or 1h30m"))]
    pub rotation_grace_period: Option<String>,
}

/// Pod-level settings applied to every member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Only nodes with these labels are considered for placement.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "label_map_schema")]
    #[x_kube(validation = Rule::new("self.all(k, !format.qualifiedName().validate(k).hasValue() && !format.labelValue().validate(self[k]).hasValue())").message("pod.nodeSelector keys must be label keys and values label values (63 characters of [A-Za-z0-9-_.], alphanumeric at both ends)"))]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations; nodes with taints these do not tolerate are not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(t, !has(t.operator) || t.operator in ['Exists', 'Equal'])").message("pod.tolerations operator must be Exists or Equal"))]
    #[x_kube(validation = Rule::new("self.all(t, !has(t.effect) || t.effect in ['', 'NoSchedule', 'PreferNoSchedule', 'NoExecute'])").message("pod.tolerations effect must be NoSchedule, PreferNoSchedule or NoExecute"))]
    #[x_kube(validation = Rule::new("self.all(t, !has(t.operator) || t.operator != 'Exists' || !has(t.value) || t.value == '')").message("pod.tolerations value must be empty when operator is Exists"))]
    #[schemars(length(max = 64))]
    pub tolerations: Vec<Toleration>,
    /// PriorityClass of the member Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == '' || !format.dns1123Subdomain().validate(self).hasValue()").message("pod.priorityClassName must be a PriorityClass name (a lowercase DNS subdomain)"))]
    pub priority_class_name: Option<String>,
    /// Extra labels on member Pods (operator-owned labels win on conflict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "label_map_schema")]
    #[x_kube(validation = Rule::new("self.all(k, !format.qualifiedName().validate(k).hasValue() && !format.labelValue().validate(self[k]).hasValue())").message("pod.labels keys must be label keys and values label values (63 characters of [A-Za-z0-9-_.], alphanumeric at both ends)"))]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on member Pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "annotation_map_schema")]
    #[x_kube(validation = Rule::new("self.all(k, !format.qualifiedName().validate(k).hasValue())").message("pod.annotations keys must be qualified names (an optional DNS prefix, a slash, 63 characters of [A-Za-z0-9-_.])"))]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state, written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary: Pending, Creating, Bootstrapping, Ready, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Standard conditions: Ready, Progressing, Degraded, PlacementSatisfied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Ready members over desired members, e.g. `6/6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_members: Option<String>,
    /// Members running the spec's current revision (image, restart-requiring config,
    /// resources, pod settings) over desired members, e.g. `4/6` during a rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_members: Option<String>,
    /// The revision members are updated to (a hash of what they are built from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The current (or last) reshard: slots moving to spread them evenly over the wanted
    /// shards after `leaders` changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reshard: Option<ReshardStatus>,
    /// Number of distinct zones holding members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zones: Option<i32>,
    /// Compact placement: per shard the leader's zone, then followers' zones (`s0:a/b s1:b/c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// Whether losing any single zone leaves a majority of leaders and every shard an in-sync
    /// follower in another zone, computed from where Redis reports the leaders now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_loss_safe: Option<bool>,
    /// Per-shard members and slots as Redis reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
    /// PVCs of members that were re-placed elsewhere (their node was lost) and that no member
    /// uses any more. Kept under `pvcRetentionPolicy: Retain` (delete them once sure); deleted
    /// by the operator under `Delete` once the cluster is healthy again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphaned_claims: Vec<String>,
    /// With `spec.tls`: the certificate in the Secret and which members serve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// The password: where it comes from and how its last rotation went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthStatus>,
    /// With `spec.restoreFrom`: the restore's progress (written by the restore loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
}

/// The password the members run with, and a rotation under way or in its grace period.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// The Secret and key the password comes from (`name/key`).
    pub secret: String,
    /// When the members and the operator last switched to a new password (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    /// Until when the previous password is still accepted (RFC 3339); unset when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_accepted_until: Option<String>,
    /// Members that do not accept the Secret's password yet: a rotation under way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

/// The TLS Secret's certificate (the first in `tls.crt`) and what the members present.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// SHA-256 fingerprint of the Secret's certificate (hex, as `openssl x509 -fingerprint
    /// -sha256` prints it without colons).
    pub fingerprint: String,
    /// Its serial number (hex).
    pub serial: String,
    /// When it expires (RFC 3339). A Warning Event `CertificateExpiring` is published when
    /// fewer than 7 days are left.
    pub not_after: String,
    /// Fewer than 7 days are left (or it expired).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expiring: bool,
    /// Members presenting it, over the members a TLS handshake reached.
    pub serving: String,
    /// Members presenting another certificate (waiting to reload theirs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outdated: Vec<String>,
}

/// Progress of moving slots between shards.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReshardStatus {
    /// The number of shards the slots are being spread over.
    pub to_leaders: i32,
    /// Slots that had to change owner when this reshard began.
    pub slots_to_move: i32,
    /// Slots moved so far.
    pub slots_moved: i32,
    /// Keys moved with them.
    pub keys_moved: i64,
    /// `slotsMoved / slotsToMove` as a percentage, e.g. `25%`.
    pub progress: String,
    /// Why it is not moving, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl ReshardStatus {
    /// "Is a reshard under way" (one definition): one towards `to_leaders` has begun and not
    /// moved its last slot.
    pub fn under_way_to(&self, to_leaders: i32) -> bool {
        self.to_leaders == to_leaders && self.slots_moved < self.slots_to_move
    }
}

/// Summary phase of a cluster.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for input to be valid or placement to be possible.
    Pending,
    /// Creating member Pods.
    Creating,
    /// Joining members into one Redis Cluster.
    Bootstrapping,
    /// Every slot served, every follower in sync.
    Ready,
    /// Serving, but something needs repair.
    Degraded,
    /// Cannot proceed without user action.
    Failed,
}

/// One shard as observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard index.
    pub index: i32,
    /// Slot ranges the leader owns, e.g. `0-5460`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slots: String,
    /// The member Redis reports as master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<MemberStatus>,
    /// The members Redis reports as replicas (or that are not yet attached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<MemberStatus>,
}

/// One member as observed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Pod name.
    pub pod: String,
    /// Node the Pod runs on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Zone of that node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zone: String,
    /// Redis node ID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    /// For followers: replication is connected and caught up with the leader.
    #[serde(default)]
    pub in_sync: bool,
}

fn default_followers() -> i32 {
    1
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}

fn default_zone_key() -> String {
    DEFAULT_ZONE_KEY.to_string()
}

fn conditions_schema(generator: &mut schemars::generate::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// The condition types of a RedisCluster's status.
pub mod conditions {
    /// Every slot is served and every follower is in sync.
    pub const READY: &str = "Ready";
    /// The operator is creating or changing something.
    pub const PROGRESSING: &str = "Progressing";
    /// The cluster serves, but something needs repair.
    pub const DEGRADED: &str = "Degraded";
    /// The placement constraints can be met with the current nodes.
    pub const PLACEMENT_SATISFIED: &str = "PlacementSatisfied";
    /// kstatus: the operator is moving the cluster towards its spec (a rollout, reshard,
    /// recovery or scale is under way). False once the spec is reached.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: the operator cannot make progress without a human (an invalid spec, a refused
    /// scale-in, a blocked rollout, placement that cannot be met).
    pub const STALLED: &str = "Stalled";
}

/// `spec.config`'s schema: bounded in size, so the API server can bound the cost of its CEL
/// rules (an unbounded map of unbounded strings is refused as too expensive to check).
fn config_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 128,
        "additionalProperties": {"type": "string", "maxLength": 4096},
    })
}

/// Label maps (`pod.labels`, `pod.nodeSelector`): bounded, so that the API server can bound the
/// cost of their CEL rules; a label value is at most 63 characters anyway.
fn label_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": 63},
    })
}

/// `pod.annotations`: bounded like [`label_map_schema`], values up to 4 KiB each.
fn annotation_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {"type": "string", "maxLength": 4096},
    })
}

/// `resources`: Kubernetes' own schema with its `limits` and `requests` maps bounded (a few
/// resource names, quantities of at most 64 characters), so that the API server can bound the
/// cost of the rules comparing them.
fn resources_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Option<ResourceRequirements>>();
    if let Some(props) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        for key in ["limits", "requests"] {
            if let Some(map) = props
                .get_mut(key)
                .and_then(serde_json::Value::as_object_mut)
            {
                map.insert("maxProperties".into(), 16.into());
                if let Some(values) = map
                    .get_mut("additionalProperties")
                    .and_then(serde_json::Value::as_object_mut)
                {
                    values.insert("maxLength".into(), 64.into());
                }
            }
        }
    }
    schema
}
