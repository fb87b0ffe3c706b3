//! The paths where Redis itself cannot avoid loss (reference S6, S8): visible, never silent,
//! and never resolved by guessing.
//!
//! * **DataLoss**: a leader is gone together with every follower that had its data, and no
//!   volume can bring it back. Its slots stay unserved (assigning them to an empty node would
//!   silently serve them without their keys) until the user names the lost node in the
//!   `accept-data-loss` annotation; then the operator releases the slots (FORGET everywhere)
//!   and the bootstrap gives them to an empty member of the shard.
//! * **QuorumLost**: a majority of the leaders is gone, so Redis can elect no one and FORCE
//!   cannot win an election. Only with the lost leaders named in the `accept-takeover`
//!   annotation does the operator run `CLUSTER FAILOVER TAKEOVER` on each lost shard's most
//!   up-to-date follower (no vote; unreplicated writes lost; a split brain if the old leader
//!   is alive behind a partition).
//!
//! Both annotations name node ids, so an annotation left behind never accepts a later loss.

use super::health::Gone;
use super::{Action, FailoverKind, Plan, Problem};
use crate::controller::observe::Observed;
use crate::redis::ids::{SlotRange, ranges_from_slots};

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
    pub fn from_annotations(a: &std::collections::BTreeMap<String, String>) -> Self {
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
}

fn named(list: &[String], g: &Gone) -> bool {
    list.iter().any(|p| g.id.as_str().starts_with(p.as_str()))
}

/// A leader whose data is gone for good: its Pod is gone (or its node is), no volume records
/// it, and no follower that ever synced from it answers.
fn data_gone(obs: &Observed, g: &Gone) -> bool {
    g.slots > 0
        && g.k8s.is_some()
        && !g.pod_alive
        && g.may_return.is_none()
        && !g
            .followers
            .iter()
            .filter_map(|id| obs.view.node(id))
            .any(|f| f.replication.master_repl_offset > 0)
        && !obs
            .claims
            .iter()
            .any(|c| c.node_id.as_ref() == Some(&g.id) && !c.deleting)
}

/// Leaders lost while no majority of the voting masters answers.
fn quorum_lost<'a>(obs: &Observed, gone: &'a [Gone]) -> Vec<&'a Gone> {
    let lost: Vec<&Gone> = gone
        .iter()
        .filter(|g| g.slots > 0 && g.k8s.is_some())
        .collect();
    let answering = obs.view.masters().filter(|m| m.is_serving_master()).count();
    if lost.is_empty() || answering >= obs.view.quorum() {
        return Vec::new();
    }
    lost
}

fn slot_ranges(obs: &Observed, g: &Gone) -> Vec<SlotRange> {
    ranges_from_slots(
        obs.view
            .slot_owners()
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_ref() == Some(&g.id))
            .filter_map(|(s, _)| u16::try_from(s).ok()),
    )
}

fn fmt_ranges(ranges: &[SlotRange]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The problems only a human can accept, most severe first. `cluster` names the RedisCluster
/// in the commands the messages suggest.
pub fn problems(obs: &Observed, gone: &[Gone], cluster: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    let lost = quorum_lost(obs, gone);
    if !lost.is_empty() {
        let ids: Vec<&str> = lost.iter().map(|g| g.id.short()).collect();
        out.push(Problem {
            reason: "QuorumLost",
            message: format!(
                "{} of {} leaders are lost ({}): Redis cannot elect replacements without a majority. \
                 To promote their followers without an election (writes they had not replicated are \
                 lost, and a leader alive behind a partition would serve the same slots): \
                 kubectl annotate rediscluster {cluster} {ACCEPT_TAKEOVER}={}",
                lost.len(),
                obs.view.voting_masters().len(),
                ids.join(", "),
                ids.join(",")
            ),
        });
    }
    for g in gone.iter().filter(|g| data_gone(obs, g)) {
        let shard =
            super::health::shard_of(obs, &g.id).map_or_else(|| "?".to_string(), |s| s.to_string());
        out.push(Problem {
            reason: "DataLoss",
            message: format!(
                "shard {shard} lost its leader {} and every follower with its data; slots {} are \
                 not served and nothing is reassigned automatically. To serve them again EMPTY: \
                 kubectl annotate rediscluster {cluster} {ACCEPT_DATA_LOSS}={}",
                g.id.short(),
                fmt_ranges(&slot_ranges(obs, g)),
                g.id.short()
            ),
        });
    }
    out
}

/// Ids the loss problems are about (their plain "LeaderLost" line is left out).
pub fn covered(obs: &Observed, gone: &[Gone]) -> Vec<crate::redis::ids::NodeId> {
    let mut ids: Vec<_> = quorum_lost(obs, gone)
        .iter()
        .map(|g| g.id.clone())
        .collect();
    ids.extend(
        gone.iter()
            .filter(|g| data_gone(obs, g))
            .map(|g| g.id.clone()),
    );
    ids
}

/// The accepted break-glass step, if the user named the lost node.
pub fn plan(obs: &Observed, gone: &[Gone]) -> Option<Plan> {
    for g in quorum_lost(obs, gone) {
        if !named(&obs.break_glass.takeover, g) {
            continue;
        }
        let Some((best, shard)) = g.best_follower(obs) else {
            continue;
        };
        return Some(Plan::step(
            Action::Failover {
                shard,
                to: best.id().clone(),
                kind: FailoverKind::Takeover,
                reason: format!(
                    "the majority of leaders is lost and the user accepted a takeover for {} ({ACCEPT_TAKEOVER}): promoting {} without an election",
                    g.id.short(),
                    best.id().short()
                ),
            },
            "TakingOver",
            format!(
                "shard {shard}: TAKEOVER by {} (accepted by the user)",
                best.id().short()
            ),
        ));
    }
    let release: Vec<_> = gone
        .iter()
        .filter(|g| data_gone(obs, g) && named(&obs.break_glass.data_loss, g))
        .map(|g| {
            (
                g.id.clone(),
                format!(
                    "the user accepted the loss of {}'s data ({ACCEPT_DATA_LOSS}); its slots {} are released to be served empty",
                    g.id.short(),
                    fmt_ranges(&slot_ranges(obs, g))
                ),
            )
        })
        .collect();
    (!release.is_empty()).then(|| {
        Plan::step(
            Action::ReleaseSlots(release),
            "ReleasingSlots",
            "releasing the slots of a leader lost with its data (accepted by the user)",
        )
    })
}
