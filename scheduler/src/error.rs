//! Why no placement exists.

use serde::{Deserialize, Serialize};

/// No placement satisfies the request; `reason` says why in words an SRE understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[error("{reason}")]
pub struct Unsatisfiable {
    /// The kind of obstacle, for code that reacts to it.
    pub cause: Cause,
    /// The obstacle in words, naming zones and their free slots.
    pub reason: String,
}

/// The kind of obstacle behind an [`Unsatisfiable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Cause {
    /// Fewer zones with free capacity than members per shard (Required spread).
    NotEnoughZones,
    /// Not enough free slots, counting at most one member of a shard per zone (Required) or
    /// per node (Preferred).
    NotEnoughCapacity,
    /// Leaders cannot be spread at most ⌈L / Z⌉ per zone because some zones are too small.
    LeaderSpread,
    /// The request itself cannot be met whatever the nodes, e.g. too many members per shard.
    InvalidRequest,
    /// The solver failed to construct a placement it proved to exist; a bug to report.
    Internal,
}

impl Unsatisfiable {
    pub(crate) fn new(cause: Cause, reason: impl Into<String>) -> Self {
        Self {
            cause,
            reason: reason.into(),
        }
    }
}
