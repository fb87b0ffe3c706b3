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
    /// Entries of either annotation that are no node id (8 to 40 hex digits), as
    /// `annotation: "entry"`: reported, so that a typo is not silently never acted on.
    pub malformed: Vec<String>,
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
        let malformed = [ACCEPT_DATA_LOSS, ACCEPT_TAKEOVER]
            .into_iter()
            .flat_map(|key| {
                let entries = a
                    .get(key)
                    .map(|v| v.split([',', ' ']))
                    .into_iter()
                    .flatten();
                entries
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && !is_node_id_prefix(s))
                    .map(move |s| format!("{key}: {s:?}"))
            })
            .collect();
        Self {
            data_loss: list(ACCEPT_DATA_LOSS),
            takeover: list(ACCEPT_TAKEOVER),
            malformed,
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

/// A node id or a prefix of one long enough to be unique (8 to 40 hex digits).
fn is_node_id_prefix(s: &str) -> bool {
    (8..=40).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn named(list: &[String], id: &NodeId) -> bool {
    list.iter().any(|p| id.as_str().starts_with(p.as_str()))
}
