//! The manifest: the object that makes a backup a backup. It is written last, after every
//! shard's object, so a backup without one (failed, interrupted) is never trusted by a restore.
//! It records what a restore needs to check everything before writing anything: each shard's
//! object with its size, SHA-256 and key count, and the slot map.

use serde::{Deserialize, Serialize};

use super::shards::parse_slots;
use crate::crd::backup::BackupShardStatus;
use crate::redis::ids::SLOT_COUNT;

/// The manifest's name under the backup's path.
pub const MANIFEST: &str = "manifest.json";
/// The format this operator writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A shard's object name.
pub fn object_name(index: usize) -> String {
    format!("shard-{index}.rdb")
}

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// Where the backup was taken: namespace, RedisCluster, RedisClusterBackup and its uid.
    pub namespace: String,
    /// The RedisCluster.
    pub cluster: String,
    /// The RedisClusterBackup.
    pub backup: String,
    /// Its uid.
    pub uid: String,
    /// When it started (the consistency point) and completed, RFC 3339.
    pub started_at: String,
    /// When the last shard was stored.
    pub completed_at: String,
    /// The Redis version that wrote the snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_version: Option<String>,
    /// The RedisCluster's spec then.
    pub spec: serde_json::Value,
    /// The shards, in slot order.
    pub shards: Vec<ManifestShard>,
}

/// One shard's object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestShard {
    /// Position in slot order.
    pub index: usize,
    /// The slots it held, `0-5460`.
    pub slots: String,
    /// The object's name under the backup's path.
    pub object: String,
    /// Keys in it.
    pub keys: u64,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
    /// The Pod it was taken from, and whether that was a `follower` or the `leader`.
    pub source: String,
    /// `follower` or `leader`.
    pub source_role: String,
    /// The leader's replication offset at the start, and the source's when it snapshotted.
    pub leader_offset_at_start: u64,
    /// The source's offset (at least the leader's at the start).
    pub source_offset: u64,
}

impl ManifestShard {
    /// From a stored shard's status; `None` until it is stored.
    pub fn of(s: &BackupShardStatus) -> Option<Self> {
        let n = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        Some(Self {
            index: usize::try_from(s.index).ok()?,
            slots: s.slots.clone(),
            object: s.object.clone()?,
            keys: n(s.keys)?,
            bytes: n(s.bytes)?,
            sha256: s.sha256.clone()?,
            source: s.source.clone()?,
            source_role: s.source_role.clone()?,
            leader_offset_at_start: u64::try_from(s.leader_offset_at_start).ok()?,
            source_offset: n(s.source_offset)?,
        })
    }
}

impl Manifest {
    /// Every key in it.
    pub fn keys(&self) -> u64 {
        self.shards.iter().map(|s| s.keys).sum()
    }

    /// Every byte of its objects.
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }

    /// Reads and checks a manifest: a format this operator knows, shards numbered in order,
    /// well-formed checksums, and slots covering the whole slot space exactly once.
    ///
    /// # Errors
    /// Why it cannot be trusted, in words for a condition.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not valid: {e}"))?;
        if m.format_version != FORMAT_VERSION {
            return Err(format!(
                "the manifest has format version {}; this operator reads version {FORMAT_VERSION}",
                m.format_version
            ));
        }
        if m.shards.is_empty() {
            return Err("the manifest lists no shard".into());
        }
        let mut owner = vec![None; usize::from(SLOT_COUNT)];
        for (i, s) in m.shards.iter().enumerate() {
            if s.index != i {
                return Err(format!("the manifest's shard {i} is numbered {}", s.index));
            }
            if s.sha256.len() != 64 || !s.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "shard {i}'s checksum {:?} is not a SHA-256",
                    s.sha256
                ));
            }
            if s.object.is_empty() || s.object.contains("..") || s.object.starts_with('/') {
                return Err(format!(
                    "shard {i}'s object name {:?} is not safe",
                    s.object
                ));
            }
            let ranges = parse_slots(&s.slots)
                .ok_or_else(|| format!("shard {i}'s slots {:?} are not slot ranges", s.slots))?;
            for slot in ranges.iter().flat_map(|r| r.slots()) {
                if let Some(other) = owner[usize::from(slot)].replace(i) {
                    return Err(format!("slot {slot} is in shards {other} and {i}"));
                }
            }
        }
        if let Some(slot) = owner.iter().position(Option::is_none) {
            return Err(format!("slot {slot} is in no shard"));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: usize, slots: &str) -> ManifestShard {
        ManifestShard {
            index,
            slots: slots.into(),
            object: object_name(index),
            keys: 10,
            bytes: 100,
            sha256: "ab".repeat(32),
            source: format!("demo-s{index}-m1"),
            source_role: "follower".into(),
            leader_offset_at_start: 5,
            source_offset: 6,
        }
    }

    fn manifest(shards: Vec<ManifestShard>) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            namespace: "ns".into(),
            cluster: "demo".into(),
            backup: "b".into(),
            uid: "u".into(),
            started_at: "2026-12-05T00:00:00Z".into(),
            completed_at: "2026-12-05T00:01:00Z".into(),
            redis_version: Some("7.0.15".into()),
            spec: serde_json::json!({"leaders": 3}),
            shards,
        }
    }

    fn parse(m: &Manifest) -> Result<Manifest, String> {
        Manifest::parse(&serde_json::to_vec(m).unwrap())
    }

    #[test]
    fn a_whole_manifest_round_trips() {
        let m = manifest(vec![
            shard(0, "0-5460"),
            shard(1, "5461-10922"),
            shard(2, "10923-16383"),
        ]);
        assert_eq!(parse(&m).unwrap(), m);
        assert_eq!(m.keys(), 30);
        assert_eq!(m.bytes(), 300);
    }

    #[test]
    fn a_manifest_that_cannot_be_trusted_is_refused() {
        let cases: Vec<(&str, Manifest)> = vec![
            (
                "slot 16383 is in no shard",
                manifest(vec![shard(0, "0-16382")]),
            ),
            (
                "slot 5 is in shards 0 and 1",
                manifest(vec![shard(0, "0-5"), shard(1, "5-16383")]),
            ),
            ("numbered", manifest(vec![shard(1, "0-16383")])),
            ("lists no shard", manifest(vec![])),
            ("not slot ranges", manifest(vec![shard(0, "0-99999")])),
            ("format version 2", {
                let mut m = manifest(vec![shard(0, "0-16383")]);
                m.format_version = 2;
                m
            }),
            ("not a SHA-256", {
                let mut s = shard(0, "0-16383");
                s.sha256 = "abc".into();
                manifest(vec![s])
            }),
            ("not safe", {
                let mut s = shard(0, "0-16383");
                s.object = "../other/shard-0.rdb".into();
                manifest(vec![s])
            }),
        ];
        for (want, m) in cases {
            let err = parse(&m).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert!(Manifest::parse(b"{").unwrap_err().contains("not valid"));
    }
}
