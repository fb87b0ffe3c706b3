//! The break-glass steps where Redis itself cannot avoid loss (reference S6, S8), taken only
//! once the user named the lost node in an annotation ([`crate::controller::observe::break_glass`]).
//! The losses themselves are facts ([`super::facts::loss`]) and conditions; while a shard awaits
//! its volumes, the members concern leaves it alone.
//!
//! * **QuorumLost**: with the lost leaders named in `accept-takeover`, `CLUSTER FAILOVER
//!   TAKEOVER` on each lost shard's most up-to-date follower (no vote; unreplicated writes
//!   lost; a split brain if the old leader is alive behind a partition).
//! * **DataLoss**: with the lost leader named in `accept-data-loss`, its slots are released
//!   (FORGET everywhere) and the bootstrap gives them to an empty member of the shard.

use super::facts::Facts;
use super::facts::loss::{data_gone, fmt_ranges, quorum_lost, slot_ranges};
use super::facts::promotion::{Why, follower_to_promote};
use super::step::{Action, FailoverKind, Step};
use crate::controller::observe::break_glass::{ACCEPT_DATA_LOSS, ACCEPT_TAKEOVER};

/// The break-glass step the user accepted, if any.
pub fn step(f: &Facts<'_>) -> Option<Step> {
    let obs = f.obs;
    for g in quorum_lost(obs, &f.gone) {
        if !obs.break_glass.accepts_takeover(&g.id) {
            continue;
        }
        let Some((best, member)) = follower_to_promote(obs, Why::LeaderGone(g)) else {
            continue;
        };
        let shard = member.shard;
        return Some(Step::new(
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
    let release: Vec<_> = f
        .gone
        .iter()
        .filter(|g| data_gone(obs, g) && obs.break_glass.accepts_data_loss(&g.id))
        .map(|g| {
            (
                g.id.clone(),
                format!(
                    "the user accepted the loss of {}'s data ({ACCEPT_DATA_LOSS}); its slots {} are released to be served empty",
                    g.id.short(),
                    fmt_ranges(&slot_ranges(&f.owners, &g.id))
                ),
            )
        })
        .collect();
    (!release.is_empty()).then(|| {
        Step::new(
            Action::ReleaseSlots(release),
            "ReleasingSlots",
            "releasing the slots of a leader lost with its data (accepted by the user)",
        )
    })
}
