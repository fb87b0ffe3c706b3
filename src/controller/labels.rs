//! Label keys, selectors and object names shared by builders and observers.

use std::collections::BTreeMap;

use crate::crd::RedisCluster;

/// Field manager (and event reporter) name of the operator.
pub const MANAGER: &str = "redis-operator";
/// Label naming the RedisCluster an object belongs to.
pub const CLUSTER_LABEL: &str = "redis.redis-operator.dev/cluster";
/// Label holding a member's shard index.
pub const SHARD_LABEL: &str = "redis.redis-operator.dev/shard";
/// Label holding a member's ordinal within its shard (stable across incarnations).
pub const MEMBER_LABEL: &str = "redis.redis-operator.dev/member";
/// Pod annotation: the revision (hash of image, restart-requiring config, resources and pod
/// settings) the Pod was built from. A member whose revision differs from the spec's is
/// outdated and is rolled.
pub const REVISION_ANNOTATION: &str = "redis.redis-operator.dev/revision";
/// Pod annotation: the runtime-settable config applied to the member's process (JSON: the
/// settings and the container restart count they were applied at; a restarted container
/// re-reads redis.conf, so it is applied again).
pub const LIVE_CONFIG_ANNOTATION: &str = "redis.redis-operator.dev/live-config";
/// Pod annotation: the certificate (SHA-256 fingerprint) the operator last asked the member to
/// reload its TLS files for, and when (`<fingerprint> <RFC 3339 time>`): a member still
/// presenting an older one shortly after is waiting for its mounted Secret files, and is not
/// asked again at once.
pub const TLS_RELOADED_ANNOTATION: &str = "redis.redis-operator.dev/tls-reloaded";
/// Pod annotation on the members of a shard a scale-in removes: when its master was first
/// seen holding no slot and no key (RFC 3339). The scale-in grace period runs from it, so an
/// operator restart resumes it; it is cleared if the shard holds slots again.
pub const DRAINED_AT_ANNOTATION: &str = "redis.redis-operator.dev/drained-at";
/// Pod annotation on a rolling update's surge member: the Pod of the outdated member it
/// replaces. That member retires once this one is in sync; an operator restart sees the pair.
pub const REPLACES_ANNOTATION: &str = "redis.redis-operator.dev/replaces";
/// Pod annotation on a surge member: the Redis node id of the member it replaces. Once that
/// member's Pod is gone or going, the identity is forgotten at once (it retired, it did not
/// fail) and is no problem meanwhile.
pub const REPLACES_ID_ANNOTATION: &str = "redis.redis-operator.dev/replaces-id";
/// Auth state Secret annotation: until when the previous password is accepted (RFC 3339).
pub const PREVIOUS_UNTIL_ANNOTATION: &str = "redis.redis-operator.dev/previous-password-until";
/// Auth state Secret annotation: when the members last switched password (RFC 3339).
pub const ROTATED_AT_ANNOTATION: &str = "redis.redis-operator.dev/password-rotated-at";
/// PVC annotation: the Redis node id last seen running on the volume. A member whose Pod is
/// gone but whose volume is intact comes back with this identity, so it is never forgotten
/// while the volume's node is usable.
pub const NODE_ID_ANNOTATION: &str = "redis.redis-operator.dev/node-id";
/// Standard managed-by label value selecting everything this operator creates.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=redis-operator";

/// Labels every object of `cluster` carries (also the selector of its Services and PDB).
pub fn selector_labels(cluster_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "redis".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            cluster_name.to_string(),
        ),
        (CLUSTER_LABEL.to_string(), cluster_name.to_string()),
    ])
}

/// Labels of every object the operator creates for `cluster_name`.
pub fn common_labels(cluster_name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster_name);
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        MANAGER.to_string(),
    );
    labels
}

/// Labels of one member's Pod and PVC.
pub fn member_labels(cluster_name: &str, shard: usize, member: usize) -> BTreeMap<String, String> {
    let mut labels = common_labels(cluster_name);
    labels.insert(
        "app.kubernetes.io/component".to_string(),
        "member".to_string(),
    );
    labels.insert(SHARD_LABEL.to_string(), shard.to_string());
    labels.insert(MEMBER_LABEL.to_string(), member.to_string());
    labels
}

/// Label selector string matching all members of a cluster.
pub fn cluster_selector(cluster_name: &str) -> String {
    format!("{CLUSTER_LABEL}={cluster_name}")
}

/// Names of the per-cluster objects.
pub struct Names;

impl Names {
    /// ConfigMap holding redis.conf.
    pub fn config_map(cluster: &RedisCluster) -> String {
        format!("{}-config", name_of(cluster))
    }
    /// Client Service.
    pub fn client_service(cluster: &RedisCluster) -> String {
        name_of(cluster).to_string()
    }
    /// Headless Service (stable DNS for members, published before readiness).
    pub fn headless_service(cluster: &RedisCluster) -> String {
        format!("{}-headless", name_of(cluster))
    }
    /// PodDisruptionBudget.
    pub fn pdb(cluster: &RedisCluster) -> String {
        name_of(cluster).to_string()
    }
    /// NetworkPolicy of the members.
    pub fn network_policy(cluster: &RedisCluster) -> String {
        name_of(cluster).to_string()
    }
    /// Generated auth Secret.
    pub fn generated_auth_secret(cluster: &RedisCluster) -> String {
        format!("{}-auth", name_of(cluster))
    }
    /// The operator's record of the password members run with (and the previous one during
    /// a rotation's grace period). Members read their password from it, never from the
    /// user's Secret: a member started in the middle of a rotation runs with a password every
    /// member accepts.
    pub fn auth_state_secret(cluster: &RedisCluster) -> String {
        format!("{}-auth-state", name_of(cluster))
    }
    /// Pod of one incarnation of a member. Incarnations never reuse a name, so a replacement
    /// never waits for a predecessor stuck Terminating on a dead node.
    pub fn member_pod(cluster_name: &str, shard: usize, member: usize, suffix: &str) -> String {
        format!("{cluster_name}-s{shard}-m{member}-{suffix}")
    }
    /// PVC of a member on one node (local volumes are node-bound, so a member that moves to
    /// another node gets a new claim with a new suffix).
    pub fn member_pvc(cluster_name: &str, shard: usize, member: usize, suffix: &str) -> String {
        format!("data-{cluster_name}-s{shard}-m{member}-{suffix}")
    }
}

fn name_of(cluster: &RedisCluster) -> &str {
    cluster.metadata.name.as_deref().unwrap_or_default()
}

/// A short random suffix for incarnation names (lowercase consonants and digits, as Kubernetes'
/// generateName uses, so it never spells words).
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}
