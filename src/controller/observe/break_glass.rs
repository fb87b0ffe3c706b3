//! What the user accepted by annotation on the RedisCluster: the losses only a human can
//! accept (reference S6, S8). Read here; the loss concern acts on them.
//!
//! Both annotations name node ids, so an annotation left behind never accepts a later loss.

use std::collections::BTreeMap;

use crate::redis::ids::NodeId;

/// Annotation naming lost leaders (ids or unique prefixes, comma-separated) whose slots may be
/// served again empty.
pub const ACCEPT_DATA_LOSS: &str = "redis.redis-operator.dev/accept-data-loss";
/// Annotation naming lost leaders whose followers may be promoted without an election.
pub const ACCEPT_TAKEOVER: &str = "redis.redis-operator.dev/accept-takeover";

/// What the user accepted, from the RedisCluster's annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakGlass {
    /// Node ids (or prefixes of at least 8 characters) named in [`ACCEPT_DATA_LOSS`].
    pub data_loss: Vec<String>,
    /// Node ids (or prefixes of at least 8 characters) named in [`ACCEPT_TAKEOVER`].
    pub takeover: Vec<String>,
}

impl BreakGlass {
    /// Parses the annotations.
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Self {
        let list = |key: &str| -> Vec<String> {
            a.get(key)
                .map(|v| {
                    v.split([',', ' '])
                        .map(str::trim)
                        .filter(|s| s.len() >= 8)
                        .map(str::to_ascii_lowercase)
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            data_loss: list(ACCEPT_DATA_LOSS),
            takeover: list(ACCEPT_TAKEOVER),
        }
    }

    /// Whether the user accepted losing `id`'s data.
    pub fn accepts_data_loss(&self, id: &NodeId) -> bool {
        named(&self.data_loss, id)
    }

    /// Whether the user accepted a takeover of `id`'s shard.
    pub fn accepts_takeover(&self, id: &NodeId) -> bool {
        named(&self.takeover, id)
    }
}

fn named(list: &[String], id: &NodeId) -> bool {
    list.iter().any(|p| id.as_str().starts_with(p.as_str()))
}
