//! The members' compute resources: the spec's when it sets them, else defaults derived from
//! `maxmemory`. One definition, used by the Pod builder and the placement request alike.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::crd::RedisCluster;

/// CPU every member asks for by default: enough for the scheduler to count members, and no
/// CPU limit (throttling shows as latency spikes and missed cluster-bus pings).
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// Memory asked for when `maxmemory` is unset: Redis then grows without bound, so no limit is
/// set either (a limit would turn growth into an OOM kill).
pub const DEFAULT_MEMORY_REQUEST: u64 = 128 * MIB;
/// Fixed headroom on top of `maxmemory`: the process itself, client and replication buffers.
const HEADROOM: u64 = 64 * MIB;
const MIB: u64 = 1024 * 1024;

/// What a member container runs with.
///
/// With `spec.resources` set, exactly that. Otherwise CPU request 100m and, when
/// `spec.config.maxmemory` is set, a memory request equal to the limit (Guaranteed memory, so
/// a member is never the first to be evicted) of `maxmemory × 1.5 + 64 MiB`: `maxmemory`
/// bounds the dataset only; fragmentation, buffers and the copy-on-write pages of a
/// BGSAVE/AOF rewrite fork come on top.
pub fn member_resources(cluster: &RedisCluster) -> ResourceRequirements {
    if let Some(r) = &cluster.spec.resources {
        return r.clone();
    }
    let maxmemory = cluster
        .spec
        .config
        .get("maxmemory")
        .and_then(|v| redis_memory_bytes(v))
        .filter(|b| *b > 0);
    let mut requests =
        BTreeMap::from([("cpu".to_string(), Quantity(DEFAULT_CPU_REQUEST.to_string()))]);
    let limits = match maxmemory {
        Some(bytes) => {
            let memory = mib_quantity(bytes.saturating_add(bytes / 2).saturating_add(HEADROOM));
            requests.insert("memory".to_string(), memory.clone());
            Some(BTreeMap::from([("memory".to_string(), memory)]))
        }
        None => {
            requests.insert("memory".to_string(), mib_quantity(DEFAULT_MEMORY_REQUEST));
            None
        }
    };
    ResourceRequirements {
        requests: Some(requests),
        limits,
        ..ResourceRequirements::default()
    }
}

/// Rounded up to whole MiB, which reads well in `kubectl describe`.
fn mib_quantity(bytes: u64) -> Quantity {
    Quantity(format!("{}Mi", bytes.div_ceil(MIB)))
}

/// Bytes of a redis.conf memory value, as Redis reads it (`memtoull`): a plain number, or one
/// with `k`/`m`/`g` (powers of 1000) or `kb`/`mb`/`gb` (powers of 1024), any case, quotes
/// allowed. None when Redis would refuse it too (then `CONFIG SET` reports it).
pub fn redis_memory_bytes(value: &str) -> Option<u64> {
    let v = value
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_ascii_lowercase();
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits_end);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RedisClusterSpec;

    fn cluster(spec: serde_json::Value) -> RedisCluster {
        let spec: RedisClusterSpec = serde_json::from_value(spec).unwrap();
        RedisCluster::new("c", spec)
    }

    #[test]
    fn redis_memory_units_read_like_redis() {
        for (text, bytes) in [
            ("1024", Some(1024)),
            ("1kb", Some(1024)),
            ("1k", Some(1000)),
            ("100mb", Some(100 * MIB)),
            ("1GB", Some(1024 * MIB)),
            ("2g", Some(2_000_000_000)),
            ("\"1gb\"", Some(1024 * MIB)),
            ("0", Some(0)),
            ("1.5gb", None),
            ("gb", None),
            ("1tb", None),
            ("-1", None),
        ] {
            assert_eq!(redis_memory_bytes(text), bytes, "{text}");
        }
    }

    #[test]
    fn the_spec_wins_whole() {
        let c = cluster(serde_json::json!({
            "leaders": 3,
            "config": {"maxmemory": "1gb"},
            "resources": {"requests": {"cpu": "2"}},
        }));
        let r = member_resources(&c);
        assert_eq!(r.requests.unwrap().len(), 1);
        assert!(r.limits.is_none());
    }

    #[test]
    fn maxmemory_gives_a_guaranteed_memory_with_headroom() {
        let c = cluster(serde_json::json!({"leaders": 3, "config": {"maxmemory": "100mb"}}));
        let r = member_resources(&c);
        let want = Quantity("214Mi".into()); // 100 × 1.5 + 64
        assert_eq!(r.limits.unwrap()["memory"], want);
        let requests = r.requests.unwrap();
        assert_eq!(requests["memory"], want);
        assert_eq!(requests["cpu"], Quantity("100m".into()));
    }

    #[test]
    fn without_maxmemory_no_limit_is_set() {
        let c = cluster(serde_json::json!({"leaders": 3}));
        let r = member_resources(&c);
        assert!(r.limits.is_none());
        assert_eq!(r.requests.unwrap()["memory"], Quantity("128Mi".into()));
        // A value Redis would refuse gives no limit either (CONFIG SET reports it).
        let c = cluster(serde_json::json!({"leaders": 3, "config": {"maxmemory": "lots"}}));
        assert!(member_resources(&c).limits.is_none());
    }
}
